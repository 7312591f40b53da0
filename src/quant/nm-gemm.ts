/**
 * N:M-sparse MatMuls rewritten as Gemm, for TensorRT 8.0-8.2. Those versions give 2:4 sparse tensor-core
 * kernels to Convolution and FullyConnected layers, and their ONNX parser (onnx-tensorrt up to 8.2) builds an
 * IFullyConnectedLayer only from a Gemm whose A is a 2-D tensor, B a 2-D constant, alpha = beta = 1 and C absent
 * or a 1-D constant; a MatMul always becomes an IMatrixMultiplyLayer. From onnx-tensorrt 8.4 (April 2022) Gemm
 * becomes a MatrixMultiply layer too and TensorRT lists MatMuls with constant weights as eligible for sparse
 * math, so newer TensorRT needs no rewrite (it is harmless there).
 *
 * What is rewritten: MatMul(A, W) with W a 2-D float initializer [K, N] that is N:M sparse along K (the axis
 * TensorRT's sparse kernels need) and A of known rank >= 2. Gemm is 2-D only, so for A of rank r > 2
 * ([B, T, K] in transformers) the product becomes Reshape(A, [-1, K]) -> Gemm -> Reshape back to
 * Concat(Shape(A)[:-1], [N]). An Add of a constant [N] bias that is the MatMul's only consumer becomes Gemm's C
 * (the FullyConnected bias). W is not copied or changed (Gemm transB = 0), so masks keyed by its name still hold.
 */
import { ShearsError } from '../errors.js';
import { DataType } from '../ir/dtype.js';
import { cloneModel } from '../ir/clone.js';
import { uniqueName } from '../ir/edit.js';
import type { Model, Node } from '../ir/graph.js';
import { opsetVersion } from '../ir/graph.js';
import { createTensor, int64Tensor, numel, toFloat32, type Tensor } from '../ir/tensor.js';
import { rng } from '../random.js';
import { runOnce } from '../runtime/session.js';
import { inferShapes } from '../analysis/shapes.js';
import { nmViolations, type NMPattern } from '../sparsity/nm.js';

export interface NmGemmOptions {
  /** The pattern a weight must have to be rewritten (default 2:4). */
  pattern?: NMPattern;
  /** Rewrite every MatMul with a constant 2-D weight, sparse or not. */
  all?: boolean;
}

export interface NmGemmReport {
  pattern: NMPattern;
  rewritten: { node: string; weight: string; k: number; n: number; inputRank: number; bias?: string }[];
  skipped: { node: string; reason: string }[];
}

const FLOATS = new Set<number>([DataType.FLOAT, DataType.FLOAT16, DataType.DOUBLE, DataType.BFLOAT16]);

/** The model with its N:M-sparse MatMuls as Gemm (a copy); throws when there is no MatMul at all. */
export function matmulsToGemm(model: Model, opts: NmGemmOptions = {}): { model: Model; report: NmGemmReport } {
  const pattern = opts.pattern ?? { n: 2, m: 4 };
  const work = cloneModel(model);
  const g = work.graph;
  const info = inferShapes(work);
  const report: NmGemmReport = { pattern, rewritten: [], skipped: [] };
  const matmuls = g.nodes.filter((n) => n.opType === 'MatMul' && (n.domain === '' || n.domain === 'ai.onnx'));
  if (matmuls.length === 0) throw new ShearsError('no MatMul in the model: nothing to rewrite as Gemm');
  const opset = opsetVersion(work);
  const consumers = new Map<string, Node[]>();
  for (const n of g.nodes) for (const i of n.inputs) if (i) consumers.set(i, [...(consumers.get(i) ?? []), n]);
  const graphOutputs = new Set(g.outputs.map((o) => o.name));
  const int64 = (base: string, v: number[]) => {
    const name = uniqueName(g, base);
    g.initializers.set(name, int64Tensor([v.length], v));
    return name;
  };
  for (const node of matmuls) {
    const label = node.name || node.outputs[0]!;
    const skip = (reason: string) => report.skipped.push({ node: label, reason });
    const wName = node.inputs[1]!;
    const w = g.initializers.get(wName);
    if (!w) {
      skip('the weight (input 1) is not an initializer');
      continue;
    }
    if (w.dims.length !== 2) {
      skip(`the weight has ${w.dims.length} dimensions, Gemm takes 2`);
      continue;
    }
    if (!FLOATS.has(w.dtype)) {
      skip('the weight is not floating point');
      continue;
    }
    const [k, n] = w.dims as [number, number];
    if (!opts.all) {
      if (k % pattern.m !== 0) {
        skip(`K = ${k} is not a multiple of ${pattern.m}`);
        continue;
      }
      const bad = nmViolations(toFloat32(w), w.dims, 0, pattern);
      if (bad > 0) {
        skip(`not ${pattern.n}:${pattern.m} sparse along K (${bad} of ${(k / pattern.m) * n} groups have more nonzeros)`);
        continue;
      }
    }
    const a = node.inputs[0]!;
    const rank = info.types.get(a)?.shape?.length;
    if (rank === undefined) {
      skip('the rank of its input is unknown');
      continue;
    }
    if (rank < 2) {
      skip(`its input has rank ${rank}; Gemm needs 2-D`);
      continue;
    }
    if (rank > 2 && opset < 10) {
      skip(`opset ${opset} < 10: no Slice with inputs to rebuild the output shape`);
      continue;
    }
    // bias: the only consumer is an Add of a constant [N] (either side)
    const y = node.outputs[0]!;
    let bias: string | undefined;
    let out = y;
    const uses = consumers.get(y) ?? [];
    const add = uses.length === 1 && !graphOutputs.has(y) ? uses[0]! : undefined;
    if (add && add.opType === 'Add' && (add.domain === '' || add.domain === 'ai.onnx') && add.inputs.length === 2) {
      const other = add.inputs[0] === y ? add.inputs[1]! : add.inputs[0]!;
      const b = g.initializers.get(other);
      if (b && b.dtype === w.dtype && b.dims.length === 1 && b.dims[0] === n && numel(b.dims) === n && add.inputs.includes(y) && other !== y) {
        bias = other;
        out = add.outputs[0]!;
      }
    }
    const base = label.replace(/[^A-Za-z0-9_./-]/g, '_');
    const made: Node[] = [];
    const mk = (opType: string, inputs: string[], outputs: string[], attrs: Node['attrs'] = new Map()) => {
      const nd: Node = { name: uniqueName(g, `${base}/${opType}`), opType, domain: '', inputs, outputs, attrs };
      made.push(nd);
      g.nodes.splice(g.nodes.indexOf(node), 0, nd);
    };
    const gemmInputs = (x: string) => (bias ? [x, wName, bias] : [x, wName]);
    if (rank === 2) {
      mk('Gemm', gemmInputs(a), [out]);
    } else {
      const a2 = uniqueName(g, `${base}/a2d`);
      mk('Reshape', [a, int64(`${base}/shape_2d`, [-1, k])], [a2]);
      const y2 = uniqueName(g, `${base}/y2d`);
      mk('Gemm', gemmInputs(a2), [y2]);
      const sh = uniqueName(g, `${base}/a_shape`);
      mk('Shape', [a], [sh]);
      const lead = uniqueName(g, `${base}/lead`);
      mk('Slice', [sh, int64(`${base}/zero`, [0]), int64(`${base}/minus1`, [-1]), int64(`${base}/axis0`, [0])], [lead]);
      const target = uniqueName(g, `${base}/out_shape`);
      mk('Concat', [lead, int64(`${base}/n`, [n])], [target], new Map([['axis', { kind: 'int', value: 0 }]]));
      mk('Reshape', [y2, target], [out]);
    }
    g.nodes.splice(g.nodes.indexOf(node), 1);
    if (bias) {
      g.nodes.splice(g.nodes.indexOf(add!), 1);
      g.valueInfo.delete(y);
    }
    report.rewritten.push({ node: label, weight: wName, k, n, inputRank: rank, ...(bias ? { bias } : {}) });
  }
  return { model: work, report };
}

/**
 * Runs the original and the rewritten model in onnxruntime on the same seeded random inputs (symbolic dims 2,
 * float inputs standard normal, integer inputs 0) and returns the largest output difference relative to the
 * largest output magnitude.
 */
export async function gemmParity(original: Model, rewritten: Model, seed = 1): Promise<{ maxRelDiff: number; outputs: number }> {
  const r = rng(seed);
  const feeds: Record<string, Tensor> = {};
  for (const input of original.graph.inputs) {
    if (original.graph.initializers.has(input.name)) continue;
    const type = input.type;
    if (!type?.shape) throw new ShearsError(`input '${input.name}' has no shape: cannot check the rewrite in onnxruntime`);
    const dims = type.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : 2));
    const t = createTensor(type.elemType, dims);
    if (type.elemType === DataType.FLOAT) {
      const data = t.data as Float32Array;
      for (let i = 0; i < data.length; i++) data[i] = Math.sqrt(-2 * Math.log(Math.max(r(), 1e-12))) * Math.cos(2 * Math.PI * r());
    }
    feeds[input.name] = t;
  }
  const a = await runOnce(original, feeds);
  const b = await runOnce(rewritten, feeds);
  let diff = 0;
  let scale = 0;
  for (const [name, t] of Object.entries(a)) {
    const x = toFloat32(t);
    const y = toFloat32(b[name]!);
    for (let i = 0; i < x.length; i++) {
      diff = Math.max(diff, Math.abs(x[i]! - y[i]!));
      scale = Math.max(scale, Math.abs(x[i]!));
    }
  }
  return { maxRelDiff: scale > 0 ? diff / scale : diff, outputs: Object.keys(a).length };
}
