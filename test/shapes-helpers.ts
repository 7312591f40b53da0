/**
 * Cross-checks inferShapes against onnxruntime: every node output becomes an extra typeless graph output,
 * onnxruntime runs the model on random feeds, and each returned tensor's dtype and dims must match the inferred
 * type (fixed dims equal; each symbol stands for one size throughout the run).
 */
import assert from 'node:assert/strict';
import { DataType } from '../src/ir/dtype.js';
import type { Dim, Model } from '../src/ir/graph.js';
import { createTensor, numel, type Tensor } from '../src/ir/tensor.js';
import { inferShapes, type ShapeInfo, type ShapeOptions } from '../src/analysis/shapes.js';
import { createSession } from '../src/runtime/session.js';

/** Deterministic pseudo-random numbers. */
export function rng(seed = 1): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

export function randomTensor(dtype: number, dims: number[], r = rng(7)): Tensor {
  const t = createTensor(dtype, dims);
  const n = numel(dims);
  const d = t.data as unknown as { [i: number]: number | bigint };
  for (let i = 0; i < n; i++) {
    if (dtype === DataType.INT64) d[i] = BigInt(Math.floor(r() * 5));
    else if (dtype === DataType.BOOL) d[i] = r() < 0.5 ? 1 : 0;
    else if (dtype === DataType.FLOAT || dtype === DataType.DOUBLE) d[i] = r() * 4 - 2;
    else d[i] = Math.floor(r() * 5);
  }
  return t;
}

/** Feeds for the model's non-initializer inputs; symbolic dims take sizes from `sizes` (default 2). */
export function feedsFor(model: Model, sizes: Record<string, number> = {}, shapes: Record<string, Dim[]> = {}): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  const r = rng(3);
  for (const i of model.graph.inputs) {
    if (model.graph.initializers.has(i.name) || !i.type?.shape) continue;
    const dims = (shapes[i.name] ?? i.type.shape).map((d) => (typeof d === 'number' ? d : sizes[String(d)] ?? 2));
    feeds[i.name] = randomTensor(i.type.elemType, dims, r);
  }
  return feeds;
}

/** A copy of the model whose graph also outputs every node output (typeless value infos). */
export function withAllOutputs(model: Model): Model {
  const g = model.graph;
  const have = new Set(g.outputs.map((o) => o.name));
  const extra = g.nodes.flatMap((n) => n.outputs).filter((o) => o && !have.has(o)).map((name) => ({ name }));
  return { ...model, graph: { ...g, outputs: [...g.outputs, ...extra] } };
}

export interface CheckResult {
  info: ShapeInfo;
  outputs: Record<string, Tensor>;
  checked: number;
}

/** Runs the model in onnxruntime and asserts every inferred type against the actual outputs. */
export async function crossCheck(model: Model, opts: ShapeOptions & { sizes?: Record<string, number>; feeds?: Record<string, Tensor> } = {}): Promise<CheckResult> {
  const info = inferShapes(model, opts);
  const runner = await createSession(withAllOutputs(model));
  const outputs = await runner.run(opts.feeds ?? feedsFor(model, opts.sizes, opts.inputShapes));
  await runner.release();
  const bind = new Map<string, number>();
  let checked = 0;
  for (const [name, t] of Object.entries(outputs)) {
    const ty = info.types.get(name);
    assert.ok(ty, `no type inferred for '${name}'`);
    assert.equal(ty.elemType, t.dtype, `dtype of '${name}'`);
    assert.ok(ty.shape, `no shape inferred for '${name}'`);
    assert.equal(ty.shape.length, t.dims.length, `rank of '${name}': inferred [${ty.shape}] actual [${t.dims}]`);
    ty.shape.forEach((d: Dim, i) => {
      const actual = t.dims[i]!;
      if (typeof d === 'number') assert.equal(d, actual, `dim ${i} of '${name}': inferred [${ty.shape}] actual [${t.dims}]`);
      else {
        assert.ok(d !== null, `null dim in '${name}'`);
        const prev = bind.get(d);
        if (prev === undefined) bind.set(d, actual);
        else assert.equal(prev, actual, `symbol '${d}' in '${name}' stands for ${prev} elsewhere, here ${actual}`);
      }
    });
    const c = info.constants.get(name);
    if (c) assertTensorEqual(c, t, `folded constant '${name}'`);
    checked++;
  }
  return { info, outputs, checked };
}

export function assertTensorEqual(a: Tensor, b: Tensor, what: string, rtol = 0): void {
  assert.deepEqual(a.dims, b.dims, `${what}: dims`);
  assert.equal(a.dtype, b.dtype, `${what}: dtype`);
  const x = Array.from(a.data as ArrayLike<number | bigint>, Number);
  const y = Array.from(b.data as ArrayLike<number | bigint>, Number);
  for (let i = 0; i < x.length; i++) {
    const ok = rtol === 0 ? Object.is(x[i], y[i]) || x[i] === y[i] : Math.abs(x[i]! - y[i]!) <= rtol * Math.max(1, Math.abs(y[i]!)) || (Number.isNaN(x[i]) && Number.isNaN(y[i]));
    assert.ok(ok, `${what}: element ${i} differs: ${x[i]} vs ${y[i]}`);
  }
}
