/**
 * Finite-difference checking of gradient rules: builds a one-op (or small) graph with GraphBuilder, appends the
 * loss sum(w_out * y) with a fixed random w_out, differentiates it with autodiff/backward.ts, and compares the
 * gradients against central differences of the loss computed by onnxruntime running the forward graph.
 * float64 where onnxruntime's CPU kernels take double, float32 otherwise (with a looser tolerance).
 */
import { appendEmitted, buildBackward, type ValueTypes } from '../src/autodiff/backward.js';
import type { TensorType } from '../src/ir/graph.js';
import { probeTypes } from '../src/autodiff/shapes.js';
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import { numel, type Tensor } from '../src/ir/tensor.js';
import { createSession } from '../src/runtime/session.js';
import { rng } from '../src/random.js';
export { rng };


export interface GradInput {
  name: string;
  dims: number[];
  /** Values; default uniform in [-1, 1) (or gen). */
  values?: number[];
  gen?: (r: () => number) => number;
  /** Differentiate w.r.t. this input (default true). Non-differentiated inputs become constants. */
  grad?: boolean;
  /** Element type for constants (default: the float type under test). */
  elemType?: number;
}

export interface GradCase {
  inputs: GradInput[];
  /** Builds the graph from the input names; returns the float output to take the loss of. */
  build(b: GraphBuilder, names: Record<string, string>): string;
  opset?: number;
  /** Other operator sets the case's ops need (com.microsoft). */
  opsets?: { domain: string; version: number }[];
  /** Force float32 (when onnxruntime has no double kernel). Default: try float64, fall back to float32. */
  float32?: boolean;
  seed?: number;
  eps?: number;
}

export interface GradResult {
  dtype: 'float64' | 'float32';
  maxErr: number;
  checked: number;
  failures: string[];
}

function makeTensor(dtype: number, dims: number[], vals: number[]): Tensor {
  if (dtype === DataType.DOUBLE) return { dtype, dims, data: Float64Array.from(vals) };
  if (dtype === DataType.FLOAT) return { dtype, dims, data: Float32Array.from(vals) };
  if (dtype === DataType.INT64) return { dtype, dims, data: BigInt64Array.from(vals.map((v) => BigInt(v))) };
  if (dtype === DataType.INT32) return { dtype, dims, data: Int32Array.from(vals) };
  throw new Error(`dtype ${dtype}`);
}

export async function gradCheck(c: GradCase): Promise<GradResult> {
  if (!c.float32) {
    try {
      return await gradCheckAt(c, DataType.DOUBLE);
    } catch (e) {
      if (!/onnxruntime|NOT_IMPLEMENTED|not implemented|Could not find an implementation/i.test(String((e as Error).message))) throw e;
    }
  }
  return gradCheckAt(c, DataType.FLOAT);
}

async function gradCheckAt(c: GradCase, dtype: number): Promise<GradResult> {
  const r = rng(c.seed ?? 1234);
  const b = new GraphBuilder('gradcheck');
  const names: Record<string, string> = {};
  const feeds: Record<string, Tensor> = {};
  const wrt: string[] = [];
  for (const inp of c.inputs) {
    const n = numel(inp.dims);
    const vals = inp.values ?? Array.from({ length: n }, () => (inp.gen ? inp.gen(r) : r() * 2 - 1));
    if (inp.grad === false) {
      names[inp.name] = b.init(inp.name, makeTensor(inp.elemType ?? dtype, inp.dims, vals));
    } else {
      names[inp.name] = b.input(inp.name, inp.dims, dtype);
      feeds[inp.name] = makeTensor(dtype, inp.dims, vals);
      wrt.push(inp.name);
    }
  }
  const y = c.build(b, names);
  const model = b.model(c.opset ?? 17, c.opsets);
  // The output's shape, then the loss sum(w * y).
  b.output(y, undefined, dtype);
  const t0 = await probeTypes(model, {}, feeds);
  b.graph.outputs = [];
  const yShape = t0.shapes.get(y)!;
  const w = Array.from({ length: numel(yShape) }, () => r() * 2 - 1);
  const wName = b.init('w_out', makeTensor(dtype, yShape, w));
  const loss = b.node('ReduceSum', [b.node('Mul', [y, wName])], { keepdims: 0 }, { output: 'loss' });
  b.output(loss, undefined, dtype);
  const types = await probeTypes(model, {}, feeds);
  const back = buildBackward(model, { loss, wrt, types, elemType: dtype });
  appendEmitted(model.graph, back.emitter);
  for (const x of wrt) {
    const gname = back.grads.get(x);
    if (!gname) throw new Error(`no gradient for ${x}`);
    model.graph.outputs.push({ name: gname });
  }
  const runner = await createSession(model, { threads: 1 });
  try {
    const res = await runner.run(feeds);
    const lossAt = async (f: Record<string, Tensor>) => Number((await runner.run(f, ['loss']))['loss']!.data[0]);
    const eps = c.eps ?? (dtype === DataType.DOUBLE ? 1e-6 : 1e-2);
    const rtol = dtype === DataType.DOUBLE ? 1e-5 : 3e-2;
    const failures: string[] = [];
    let maxErr = 0;
    let checked = 0;
    for (const x of wrt) {
      const g = res[back.grads.get(x)!]!;
      const ga = Array.from(g.data as Float64Array, Number);
      const base = feeds[x]!;
      const n = numel(base.dims);
      if (ga.length !== n) throw new Error(`gradient of ${x} has ${ga.length} elements, expected ${n} (dims ${g.dims})`);
      const scaleG = Math.max(1e-3, ...ga.map(Math.abs));
      const atol = (dtype === DataType.DOUBLE ? 1e-7 : 1e-3) * scaleG;
      const idx = n <= 40 ? Array.from({ length: n }, (_, i) => i) : Array.from({ length: 40 }, () => Math.floor(r() * n));
      const perturbed = (i: number, d: number): Record<string, Tensor> => {
        const data = (base.data as Float64Array).slice();
        data[i] = data[i]! + d;
        return { ...feeds, [x]: { ...base, data } };
      };
      for (const i of idx) {
        const num = ((await lossAt(perturbed(i, eps))) - (await lossAt(perturbed(i, -eps)))) / (2 * eps);
        const err = Math.abs(num - ga[i]!);
        const rel = err / (atol + rtol * Math.max(Math.abs(num), Math.abs(ga[i]!)));
        maxErr = Math.max(maxErr, rel);
        checked++;
        if (rel > 1) failures.push(`${x}[${i}]: analytic ${ga[i]} vs numeric ${num}`);
      }
      // One random direction over the whole tensor.
      const dir = Array.from({ length: n }, () => r() * 2 - 1);
      const shifted = (s: number): Record<string, Tensor> => {
        const data = (base.data as Float64Array).slice();
        for (let i = 0; i < n; i++) data[i] = data[i]! + s * dir[i]!;
        return { ...feeds, [x]: { ...base, data } };
      };
      const numD = ((await lossAt(shifted(eps))) - (await lossAt(shifted(-eps)))) / (2 * eps);
      const anaD = ga.reduce((s, v, i) => s + v * dir[i]!, 0);
      const relD = Math.abs(numD - anaD) / (atol * Math.sqrt(n) + rtol * Math.max(Math.abs(numD), Math.abs(anaD)));
      maxErr = Math.max(maxErr, relD);
      checked++;
      if (relD > 1) failures.push(`${x} direction: analytic ${anaD} vs numeric ${numD}`);
    }
    return { dtype: dtype === DataType.DOUBLE ? 'float64' : 'float32', maxErr, checked, failures };
  } finally {
    await runner.release();
  }
}

/** The value types buildBackward takes, from shape analysis: element types, and the shapes that are fully static. */
export function staticValueTypes(types: ReadonlyMap<string, TensorType>): ValueTypes {
  const shapes = new Map<string, number[]>(), elemTypes = new Map<string, number>();
  for (const [k, t] of types) {
    elemTypes.set(k, t.elemType);
    if (t.shape?.every((d) => typeof d === 'number')) shapes.set(k, t.shape as number[]);
  }
  return { shapes, elemTypes };
}
