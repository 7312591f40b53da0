/**
 * float16 conversion: float32 initializers, constant attributes (Constant, ConstantOfShape values) and float
 * casts (OpDef.quant.castTo) become float16; graph inputs and outputs stay float32 by default (a Cast at each
 * boundary), inputs an op needs in float32 (OpDef.quant.keepFloat32: Resize scales, ...) keep or get float32.
 * Halves the weight size. On x86 CPUs onnxruntime has few float16 kernels and inserts casts around the others:
 * expect size savings, not speed (on GPUs and Arm the float16 kernels are fast).
 */
import { ShearsError } from '../errors.js';
import { DataType } from '../ir/dtype.js';
import { GraphIndex, removeDeadNodes, sortGraph, uniqueName } from '../ir/edit.js';
import type { Attr, Model, Node } from '../ir/graph.js';
import { subgraphs } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import { floatToHalf, toFloat32 } from '../ir/tensor.js';
import { opDef } from '../ops/registry.js';
import { cloneModel } from '../ir/clone.js';

export interface Fp16Options {
  /**
   * Make the graph inputs and outputs float16 too (default false: they stay float32); a list makes those of
   * these names float16 (the others stay float32).
   */
  ioFp16?: boolean | readonly string[];
}

export function toHalf(t: Tensor): Tensor {
  const x = toFloat32(t);
  const h = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) h[i] = floatToHalf(x[i]!);
  return { dtype: DataType.FLOAT16, dims: [...t.dims], data: h };
}

function castAttr(to: number): Attr {
  return { kind: 'int', value: to };
}

export function convertFp16(model: Model, opts: Fp16Options = {}): { model: Model; report: { mode: 'fp16'; initializers: number; castsAdded: number } } {
  const work = cloneModel(model);
  const g = work.graph;
  if (g.nodes.some((n) => subgraphs(n).length > 0)) throw new ShearsError('fp16 conversion does not handle control flow (If/Loop/Scan subgraphs) yet');
  const idx = new GraphIndex(g);
  let casts = 0;
  const addCast = (input: string, output: string, to: number): Node => {
    casts++;
    const n: Node = { name: uniqueName(g, `${output}_Cast`), opType: 'Cast', domain: '', inputs: [input], outputs: [output], attrs: new Map([['to', castAttr(to)]]) };
    g.nodes.push(n);
    return n;
  };
  // which initializer reads must stay float32
  const keep32 = new Set<string>();
  const reads16 = new Set<string>();
  for (const n of g.nodes) {
    const keep = opDef(n)?.quant?.keepFloat32 ?? [];
    n.inputs.forEach((name, i) => {
      if (!name) return;
      (keep.includes(i) ? keep32 : reads16).add(name);
    });
  }
  let converted = 0;
  for (const [name, t] of [...g.initializers]) {
    if (t.dtype !== DataType.FLOAT) continue;
    if (!keep32.has(name)) {
      g.initializers.set(name, toHalf(t));
      converted++;
    } else if (reads16.has(name)) {
      // read both ways: a float16 copy for the float16 readers
      const h = uniqueName(g, `${name}_fp16`);
      g.initializers.set(h, toHalf(t));
      converted++;
      for (const n of g.nodes) {
        const keep = opDef(n)?.quant?.keepFloat32 ?? [];
        n.inputs.forEach((v, i) => {
          if (v === name && !keep.includes(i)) n.inputs[i] = h;
        });
      }
    }
  }
  const origNodes = [...g.nodes];
  for (const n of origNodes) {
    const rule = opDef(n)?.quant;
    // float tensor attributes (Constant value, ConstantOfShape value)
    for (const [k, a] of n.attrs) if (a.kind === 'tensor' && a.value.dtype === DataType.FLOAT) n.attrs.set(k, { kind: 'tensor', value: toHalf(a.value) });
    if (rule?.castTo) {
      const a = n.attrs.get(rule.castTo);
      if (a?.kind === 'int' && a.value === DataType.FLOAT) n.attrs.set(rule.castTo, castAttr(DataType.FLOAT16));
    }
    // computed inputs that must be float32
    for (const i of rule?.keepFloat32 ?? []) {
      const v = n.inputs[i];
      if (!v || g.initializers.has(v)) continue;
      const c = uniqueName(g, `${v}_fp32`);
      addCast(v, c, DataType.FLOAT);
      n.inputs[i] = c;
    }
  }
  const io16 = (name: string) => (Array.isArray(opts.ioFp16) ? opts.ioFp16.includes(name) : opts.ioFp16 === true);
  for (const v of [...g.inputs, ...g.outputs]) if (io16(v.name) && v.type?.elemType === DataType.FLOAT) v.type = { ...v.type, elemType: DataType.FLOAT16 };
  {
    for (const inp of g.inputs) {
      if (inp.type?.elemType !== DataType.FLOAT || g.initializers.has(inp.name)) continue;
      const h = uniqueName(g, `${inp.name}_fp16`);
      for (const c of idx.consumersOf(inp.name)) c.inputs = c.inputs.map((v) => (v === inp.name ? h : v));
      addCast(inp.name, h, DataType.FLOAT16);
    }
    for (const out of g.outputs) {
      if (out.type?.elemType !== DataType.FLOAT) continue;
      const producer = idx.producer.get(out.name);
      if (!producer) continue;
      const h = uniqueName(g, `${out.name}_fp16`);
      producer.outputs = producer.outputs.map((v) => (v === out.name ? h : v));
      for (const c of idx.consumersOf(out.name)) c.inputs = c.inputs.map((v) => (v === out.name ? h : v));
      addCast(h, out.name, DataType.FLOAT);
    }
  }
  // intermediate float32 annotations are stale: drop them (onnxruntime infers types)
  for (const [k, v] of [...g.valueInfo]) if (v.type?.elemType === DataType.FLOAT) g.valueInfo.delete(k);
  sortGraph(g);
  removeDeadNodes(g);
  const io = opts.ioFp16 === true ? 'float16' : Array.isArray(opts.ioFp16) && opts.ioFp16.length ? opts.ioFp16 : 'float32';
  work.metadata.set('shears.quantization', JSON.stringify({ mode: 'fp16', io }));
  return { model: work, report: { mode: 'fp16', initializers: converted, castsAdded: casts } };
}

/** Float16 tensors of a model: initializers, constant attributes, graph inputs and outputs. */
export function float16Tensors(model: Model): number {
  const g = model.graph;
  let n = 0;
  for (const t of g.initializers.values()) if (t.dtype === DataType.FLOAT16) n++;
  for (const node of g.nodes) for (const a of node.attrs.values()) if (a.kind === 'tensor' && a.value.dtype === DataType.FLOAT16) n++;
  for (const v of [...g.inputs, ...g.outputs]) if (v.type?.elemType === DataType.FLOAT16) n++;
  return n;
}

/** A float16 model made float32 for the work (`upcastFp16`), and what restores it. */
export interface Upcast {
  model: Model;
  /** Graph inputs and outputs that were float16 (they become float16 again on the way back). */
  ioFp16: string[];
  /** Tensors made float32 (initializers and constant attributes). */
  tensors: number;
}

/**
 * The inverse of convertFp16 for the work of pruning, repair, fine-tuning and quantization: float16
 * initializers, constant attributes, casts to float16 (OpDef.quant.castTo), graph inputs and outputs become
 * float32 (exactly: every float16 value is a float32 value). `convertFp16(result, { ioFp16 })` casts back.
 */
export function upcastFp16(model: Model): Upcast {
  const work = cloneModel(model);
  const g = work.graph;
  if (g.nodes.some((n) => subgraphs(n).length > 0)) throw new ShearsError('float32 upcast does not handle control flow (If/Loop/Scan subgraphs) yet');
  const toFloat = (t: Tensor): Tensor => ({ dtype: DataType.FLOAT, dims: [...t.dims], data: toFloat32(t) });
  let tensors = 0;
  for (const [name, t] of [...g.initializers]) {
    if (t.dtype !== DataType.FLOAT16) continue;
    g.initializers.set(name, toFloat(t));
    tensors++;
  }
  for (const n of g.nodes) {
    for (const [k, a] of n.attrs) {
      if (a.kind === 'tensor' && a.value.dtype === DataType.FLOAT16) {
        n.attrs.set(k, { kind: 'tensor', value: toFloat(a.value) });
        tensors++;
      }
    }
    const rule = opDef(n)?.quant;
    if (rule?.castTo) {
      const a = n.attrs.get(rule.castTo);
      if (a?.kind === 'int' && a.value === DataType.FLOAT16) n.attrs.set(rule.castTo, castAttr(DataType.FLOAT));
    }
  }
  const ioFp16: string[] = [];
  for (const v of [...g.inputs, ...g.outputs]) {
    if (v.type?.elemType !== DataType.FLOAT16) continue;
    v.type = { ...v.type, elemType: DataType.FLOAT };
    ioFp16.push(v.name);
  }
  for (const [k, v] of [...g.valueInfo]) if (v.type?.elemType === DataType.FLOAT16) g.valueInfo.delete(k);
  work.metadata.delete('shears.quantization');
  return { model: work, ioFp16, tensors };
}
