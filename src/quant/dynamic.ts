/**
 * Dynamic int8 quantization of matrix-product layers (MatMul, Gemm with a constant 2-D weight): the weight is
 * stored as int8 (symmetric, per output column), the activation is quantized at run time:
 *   DynamicQuantizeLinear(X) -> MatMulInteger(Xq, Wq, Xzp, 0) -> Cast(float) -> Mul(Xs * Ws) [-> Add(bias)]
 * onnxruntime fuses the chain into DynamicQuantizeMatMul. No calibration data is needed. Convolutions stay float.
 * The activations are uint8, so the weights are 7-bit unless `reduceRange: false` (see defaultReduceRange).
 */
import { ShearsError } from '../errors.js';
import { DataType } from '../ir/dtype.js';
import { removeDeadNodes, sortGraph, uniqueName } from '../ir/edit.js';
import type { Model, Node } from '../ir/graph.js';
import { opsetVersion } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import { defaultReduceRange, quantizeWeight } from './math.js';
import { matmulLayers } from './matmul.js';
import { cloneModel } from '../ir/clone.js';

export interface DynamicQuantOptions {
  exclude?: RegExp;
  perTensor?: boolean;
  /** 7-bit weights (default true; false: 8 bits, exact only on x86 CPUs with VNNI and on ARM). */
  reduceRange?: boolean;
}

export interface DynamicQuantReport {
  mode: 'dynamic';
  /** Bits of the stored weights: 7 with reduce-range, else 8. */
  weightBits: 7 | 8;
  quantized: Record<string, number>;
  quantizedNodes: string[];
  excluded: { node: string; op: string; reason: string }[];
}

export function quantizeDynamic(model: Model, opts: DynamicQuantOptions = {}): { model: Model; report: DynamicQuantReport } {
  if (opsetVersion(model) < 11) throw new ShearsError(`dynamic int8 needs opset >= 11 (the model has opset ${opsetVersion(model)})`);
  const work = cloneModel(model);
  const g = work.graph;
  const { layers, skipped } = matmulLayers(work, (n) => !(opts.exclude?.test(n.name) ?? false));
  if (layers.length === 0) throw new ShearsError('nothing to quantize dynamically: no MatMul/Gemm with a constant 2-D weight (convolutions need --mode int8)');
  const quantized: Record<string, number> = {};
  const reduceRange = opts.reduceRange ?? defaultReduceRange('uint8');
  const add = (opType: string, inputs: string[], outputs: string[], attrs: Node['attrs'] = new Map()) => {
    const name = uniqueName(g, `${outputs[0]}_${opType}`);
    g.nodes.push({ name, opType, domain: '', inputs, outputs, attrs });
  };
  const init = (base: string, t: Tensor) => {
    const name = uniqueName(g, base);
    g.initializers.set(name, t);
    return name;
  };
  for (const L of layers) {
    const node = L.node;
    const base = node.name || node.outputs[0]!;
    const wq = quantizeWeight({ dtype: DataType.FLOAT, dims: [L.k, L.n], data: L.w }, opts.perTensor ? undefined : 1, reduceRange);
    const per = wq.scales.length > 1;
    const wName = init(`${base}_W_quantized`, wq.q);
    const wzp = init(`${base}_W_zero_point`, per ? { dtype: DataType.INT8, dims: [L.n], data: new Int8Array(L.n) } : { dtype: DataType.INT8, dims: [], data: new Int8Array(1) });
    const ws = new Float32Array(wq.scales.length);
    for (let i = 0; i < ws.length; i++) ws[i] = wq.scales[i]! * L.alpha;
    const wsName = init(`${base}_W_scale`, per ? { dtype: DataType.FLOAT, dims: [L.n], data: ws } : { dtype: DataType.FLOAT, dims: [], data: ws });
    const x = node.inputs[0]!;
    const y = node.outputs[0]!;
    const [xq, xs, xzp] = [uniqueName(g, `${x}_quantized`), uniqueName(g, `${x}_scale`), uniqueName(g, `${x}_zero_point`)];
    add('DynamicQuantizeLinear', [x], [xq, xs, xzp]);
    const acc = uniqueName(g, `${y}_int32`);
    add('MatMulInteger', [xq, wName, xzp, wzp], [acc]);
    const accF = uniqueName(g, `${y}_int32_float`);
    add('Cast', [acc], [accF], new Map([['to', { kind: 'int', value: DataType.FLOAT }]]));
    const scale = uniqueName(g, `${y}_scale`);
    add('Mul', [xs, wsName], [scale]);
    if (L.bias) {
      const scaled = uniqueName(g, `${y}_scaled`);
      add('Mul', [accF, scale], [scaled]);
      const b = new Float32Array(L.n);
      for (let i = 0; i < L.n; i++) b[i] = L.bias.values[i]! * L.beta;
      add('Add', [scaled, init(`${base}_bias`, { dtype: DataType.FLOAT, dims: [L.n], data: b })], [y]);
    } else add('Mul', [accF, scale], [y]);
    node.outputs = [];
    quantized[node.opType] = (quantized[node.opType] ?? 0) + 1;
  }
  g.nodes = g.nodes.filter((n) => n.outputs.length > 0);
  sortGraph(g);
  removeDeadNodes(g);
  const weightBits = reduceRange ? 7 : 8;
  work.metadata.set('shears.quantization', JSON.stringify({ mode: 'dynamic-int8', weightBits }));
  return { model: work, report: { mode: 'dynamic', weightBits, quantized, quantizedNodes: layers.map((l) => l.node.name), excluded: skipped } };
}
