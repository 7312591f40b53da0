/**
 * onnxruntime's blocked-channel (NCHWc) convolution kernels are about twice as fast as its NCHW ones on x86, but
 * its graph optimiser picks them only for Convs whose weights are constant. Training graphs feed their weights
 * (and compute the flipped weights of input-gradient convolutions), so every Conv of a step ran on the slow path.
 * lowerNchwc rewrites such nodes by their per-op rule (OpDef.nchwc) into onnxruntime's com.microsoft.nchwc ops
 * with the weight rearranged in-graph, which onnxruntime's kernels accept from any value.
 *
 * The channel block depends on the CPU (8 with AVX2, 16 with AVX-512) and the nchwc ops exist only in x86 builds:
 * nchwcBlock() finds the block by checking a small lowered Conv (strided, asymmetric pads, bias) followed by a
 * depthwise Conv against the plain ones. When no candidate matches, lowerNchwc returns the model unchanged, so the result never depends on it.
 */
import { DataType } from '../ir/dtype.js';
import { GraphBuilder } from '../ir/builder.js';
import type { Model, Node } from '../ir/graph.js';
import { opDef } from '../ops/registry.js';
import type { NchwcContext } from '../ops/types.js';
import { runOnce } from '../runtime/session.js';
import type { ValueTypes } from './backward.js';
import { probeTypes } from './shapes.js';
import { inferShapes } from '../analysis/shapes.js';
import { rng } from '../random.js';

export const NCHWC_DOMAIN = 'com.microsoft.nchwc';

/** Rewrites every node with an nchwc rule that applies at `block`; returns a new model and the count. */
export function lowerNchwcWith(model: Model, block: number, types: ValueTypes): { model: Model; lowered: number } {
  const g = model.graph;
  const taken = new Set<string>([...g.inputs.map((i) => i.name), ...g.initializers.keys()]);
  for (const n of g.nodes) {
    taken.add(n.name);
    for (const o of n.outputs) taken.add(o);
  }
  const initializers = new Map(g.initializers);
  const fresh = (base: string): string => {
    let name = base;
    for (let i = 1; taken.has(name); i++) name = `${base}_${i}`;
    taken.add(name);
    return name;
  };
  const ctx: NchwcContext = {
    block,
    shape: (name) => types.shapes.get(name),
    elemType: (name) => types.elemTypes.get(name),
    fresh,
    int64(values) {
      const name = fresh('nchwc_shape');
      initializers.set(name, { dtype: DataType.INT64, dims: [values.length], data: BigInt64Array.from(values.map(BigInt)) });
      return name;
    },
  };
  const nodes: Node[] = [];
  let lowered = 0;
  for (const n of g.nodes) {
    const rep = opDef(n)?.nchwc?.(n, ctx);
    if (rep) {
      nodes.push(...rep);
      lowered++;
    } else nodes.push(n);
  }
  if (lowered === 0) return { model, lowered };
  const opsetImports = model.opsetImports.some((o) => o.domain === NCHWC_DOMAIN) ? model.opsetImports : [...model.opsetImports, { domain: NCHWC_DOMAIN, version: 1 }];
  return { model: { ...model, opsetImports, graph: { ...g, nodes, initializers } }, lowered };
}

let blockPromise: Promise<number | undefined> | undefined;

/** onnxruntime's NCHWc block on this machine, or undefined when its nchwc ops are unavailable (cached). */
export function nchwcBlock(): Promise<number | undefined> {
  blockPromise ??= findBlock();
  return blockPromise;
}

async function findBlock(): Promise<number | undefined> {
  const [n, c, o, h, w] = [2, 32, 32, 7, 6];
  const b = new GraphBuilder('nchwc_check');
  const x = b.input('x', [n, c, h, w]);
  const wt = b.input('w', [o, c, 3, 3]);
  const bias = b.input('b', [o]);
  const dw = b.input('dw', [o, 1, 3, 3]);
  const mid = b.node('Conv', [x, wt, bias], { strides: [2, 1], pads: [1, 0, 0, 1], kernel_shape: [3, 3] }, { name: 'conv' });
  // A depthwise Conv too: its weight layout (OIHWBo) differs from the dense one's.
  b.node('Conv', [mid, dw], { group: o, pads: [1, 1, 1, 1], kernel_shape: [3, 3] }, { name: 'depthwise', output: 'y' });
  b.output('y');
  const plain = b.model(17);
  const r = rng(1);
  const feeds = {
    x: { dtype: DataType.FLOAT, dims: [n, c, h, w], data: Float32Array.from({ length: n * c * h * w }, () => r() - 0.5) },
    w: { dtype: DataType.FLOAT, dims: [o, c, 3, 3], data: Float32Array.from({ length: o * c * 9 }, () => r() - 0.5) },
    b: { dtype: DataType.FLOAT, dims: [o], data: Float32Array.from({ length: o }, () => r() - 0.5) },
    dw: { dtype: DataType.FLOAT, dims: [o, 1, 3, 3], data: Float32Array.from({ length: o * 9 }, () => r() - 0.5) },
  };
  let ref: Float32Array;
  try {
    ref = (await runOnce(plain, feeds, { threads: 1 }))['y']!.data as Float32Array;
  } catch {
    return undefined;
  }
  const types = await probeTypes(plain, {});
  for (const block of [16, 8]) {
    const { model, lowered } = lowerNchwcWith(plain, block, types);
    if (lowered !== 2) continue;
    try {
      const y = (await runOnce(model, feeds, { threads: 1 }))['y']!.data as Float32Array;
      let ok = y.length === ref.length;
      for (let i = 0; ok && i < y.length; i++) ok = Math.abs(y[i]! - ref[i]!) <= 1e-4 * (1 + Math.abs(ref[i]!));
      if (ok) return block;
    } catch {
      // nchwc ops missing from this build, or a layout this block does not accept
    }
  }
  return undefined;
}

/**
 * The model with its non-constant-weight Convs on onnxruntime's NCHWc kernels where this machine has them (same
 * results up to float rounding); `lowered` counts the rewritten nodes. Pass `types` when already known
 * (default: static shape inference).
 */
export async function lowerNchwc(model: Model, types?: ValueTypes): Promise<{ model: Model; lowered: number; block?: number }> {
  const block = await nchwcBlock();
  if (!block) return { model, lowered: 0 };
  return { ...lowerNchwcWith(model, block, types ?? staticTypes(model)), block };
}

/**
 * Value types by shears' own shape inference (no run: probing a training graph with every value as an output
 * held gigabytes); symbolic dims read as -1, which no rule accepts as a channel count.
 */
function staticTypes(model: Model): ValueTypes {
  const info = inferShapes(model);
  const shapes = new Map<string, number[]>();
  const elemTypes = new Map<string, number>();
  for (const [k, t] of info.types) {
    elemTypes.set(k, t.elemType);
    if (t.shape) shapes.set(k, t.shape.map((d) => (typeof d === 'number' ? d : -1)));
  }
  return { shapes, elemTypes };
}
