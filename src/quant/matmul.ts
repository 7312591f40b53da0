/** Matrix-product layers (OpDef.quant.matmul + the op's LinearRule form) for dynamic int8 and int4. */
import { inferShapes } from '../analysis/shapes.js';
import type { Model, Node } from '../ir/graph.js';
import { opsetVersion } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import { toFloat32 } from '../ir/tensor.js';
import { opDef } from '../ops/registry.js';

export interface MatmulLayer {
  node: Node;
  k: number;
  n: number;
  /** W as [K, N] row-major (float32). */
  w: Float32Array;
  alpha: number;
  beta: number;
  /** Bias input index and its values (length N), when the node has a per-output bias. */
  bias?: { input: number; values: Float32Array };
}

const staticDims = (d: readonly (number | string | null)[] | undefined) => d?.map((x) => (typeof x === 'number' ? x : -1));

/** The nodes that are X @ W with a constant 2-D W, with W laid out as [K, N]. Skipped nodes come with a reason. */
export function matmulLayers(model: Model, include: (n: Node) => boolean = () => true): { layers: MatmulLayer[]; skipped: { node: string; op: string; reason: string }[] } {
  const info = inferShapes(model);
  const layers: MatmulLayer[] = [];
  const skipped: { node: string; op: string; reason: string }[] = [];
  for (const node of model.graph.nodes) {
    const def = opDef(node);
    if (!def?.quant?.matmul || !def.linear) continue;
    if (!include(node)) {
      skipped.push({ node: node.name, op: node.opType, reason: 'excluded' });
      continue;
    }
    if (!def.quant.matmul(node)) {
      skipped.push({ node: node.name, op: node.opType, reason: 'not of the form X @ W' });
      continue;
    }
    const constant = (i: number): Tensor | undefined => info.constants.get(node.inputs[i] ?? '');
    const form = def.linear.form({
      node,
      opset: opsetVersion(model, node.domain),
      inShape: (i) => staticDims(info.types.get(node.inputs[i] ?? '')?.shape),
      outShape: (i) => staticDims(info.types.get(node.outputs[i] ?? '')?.shape),
      constant,
    });
    if (typeof form === 'string') {
      skipped.push({ node: node.name, op: node.opType, reason: form });
      continue;
    }
    if (form.groups !== 1 || form.kernel !== 1) {
      skipped.push({ node: node.name, op: node.opType, reason: 'not a plain matrix product' });
      continue;
    }
    const wt = constant(1);
    if (!wt) continue;
    const src = toFloat32(wt);
    const { k, outPerGroup: n } = form;
    const w = new Float32Array(k * n);
    for (let kk = 0; kk < k; kk++) for (let o = 0; o < n; o++) w[kk * n + o] = src[form.weightIndex(0, o, kk)]!;
    const layer: MatmulLayer = { node, k, n, w, alpha: form.alpha, beta: form.beta };
    if (form.bias !== undefined && node.inputs[form.bias]) {
      const b = constant(form.bias);
      if (!b) {
        skipped.push({ node: node.name, op: node.opType, reason: 'the bias is not constant' });
        continue;
      }
      layer.bias = { input: form.bias, values: toFloat32(b) };
    }
    layers.push(layer);
  }
  return { layers, skipped };
}
