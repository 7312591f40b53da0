/**
 * Float16 and already-quantized inputs. A float16 model is refused by the steps that work in float32 (repair,
 * fine-tuning, int8/dynamic/int4 quantization) unless the run asks for `float32`: then the model (and the dense
 * reference) are upcast exactly to float32 for the work, checked against onnxruntime's run of the float16 model,
 * and the result is cast back to float16 at the end, checked against the float32 result. A model that is
 * already quantized is refused by a quantize step.
 */
import { ShearsError } from '../errors.js';
import { DataType, isFloatType } from '../ir/dtype.js';
import type { Model } from '../ir/graph.js';
import { floatToHalf, numel, toFloat32, type Tensor } from '../ir/tensor.js';
import { isQuantizedNode } from '../ops/registry.js';
import { convertFp16, float16Tensors, upcastFp16 } from '../quant/index.js';
import { createSession } from '../runtime/session.js';
import type { Step } from './steps.js';

/** Largest |a - b| over the largest |b|, per output: how far a float16 run is from the float32 one. */
export interface Fp16Check {
  /** What was compared ('float32 upcast vs the float16 model', ...). */
  what: string;
  /** max |a - b| / max |b| over every output (undefined when onnxruntime could not run one of the models). */
  maxRelErr?: number;
  /** Why it was not measured. */
  skipped?: string;
}

/** The `float32` part of a run's report. */
export interface Float32Report {
  /** Float16 tensors made float32 for the work. */
  tensors: number;
  checks: Fp16Check[];
  /** Whether the result was cast back to float16 (not after int8/dynamic/int4 quantization). */
  castBack: boolean;
}

/** Relative error a float16 computation may have against float32 (rounding of weights and activations). */
export const FP16_TOLERANCE = 2e-2;

/** The quantized nodes of a model, counted by op ('QLinearConv 3, ConvInteger 2'), or '' for none. */
export function quantizedOps(model: Model): string {
  const counts = new Map<string, number>();
  for (const n of model.graph.nodes) if (isQuantizedNode(n)) counts.set(n.opType, (counts.get(n.opType) ?? 0) + 1);
  return [...counts].map(([k, v]) => `${k} ${v}`).join(', ');
}

const WORKS_IN_FLOAT32: Readonly<Record<string, string>> = { repair: 'repair', finetune: 'fine-tuning', quantize: 'quantization' };

/**
 * Refuses, before any work, what cannot mean anything: quantizing a quantized model, and working on a float16
 * model in float32 without `float32` (or asking for `float32` on a model without float16 tensors).
 */
export function checkInputPrecision(model: Model, steps: readonly Step[], float32: boolean): void {
  if (steps.some((s) => s.kind === 'quantize')) {
    const q = quantizedOps(model);
    if (q) {
      throw new ShearsError(`the model is already quantized (${q}): quantizing it again would round its rounded weights a second time; quantize the float model instead`);
    }
  }
  const half = float16Tensors(model);
  if (float32 && half === 0) throw new ShearsError('--float32: the model has no float16 tensors (nothing to upcast)');
  if (float32 || half === 0) return;
  const needs = steps.find((s) => s.kind in WORKS_IN_FLOAT32 && !(s.kind === 'quantize' && s.mode === 'fp16'));
  if (needs) {
    throw new ShearsError(`the model is float16 (${half} float16 tensors) and ${WORKS_IN_FLOAT32[needs.kind]} works in float32: add --float32 (float32: true in a recipe) to upcast it for the work and cast the result back to float16`);
  }
}

/** Seeded inputs for a check run: floats uniform in [-1, 1), integers 0; symbolic dimensions 1. */
function checkFeeds(model: Model): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  let s = 12345;
  const next = () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 4294967296;
  };
  for (const inp of model.graph.inputs) {
    if (model.graph.initializers.has(inp.name)) continue;
    const dtype = inp.type?.elemType ?? DataType.FLOAT;
    const dims = (inp.type?.shape ?? []).map((d) => (typeof d === 'number' && d > 0 ? d : 1));
    const n = numel(dims);
    if (dtype === DataType.FLOAT16) feeds[inp.name] = { dtype, dims, data: Uint16Array.from({ length: n }, () => floatToHalf(next() * 2 - 1)) };
    else if (isFloatType(dtype)) feeds[inp.name] = { dtype: DataType.FLOAT, dims, data: Float32Array.from({ length: n }, () => next() * 2 - 1) };
    else if (dtype === DataType.INT64) feeds[inp.name] = { dtype, dims, data: new BigInt64Array(n) };
    else if (dtype === DataType.INT32) feeds[inp.name] = { dtype, dims, data: new Int32Array(n) };
    else throw new ShearsError(`input '${inp.name}' has a type the check cannot feed`);
  }
  return feeds;
}

/** Feeds of `model` for a model whose float16 inputs are float32 (or the other way). */
function retype(feeds: Record<string, Tensor>, model: Model): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const inp of model.graph.inputs) {
    const f = feeds[inp.name];
    if (!f) continue;
    const want = inp.type?.elemType;
    if (want === DataType.FLOAT16 && f.dtype === DataType.FLOAT) out[inp.name] = { dtype: want, dims: f.dims, data: Uint16Array.from(toFloat32(f), floatToHalf) };
    else if (want === DataType.FLOAT && f.dtype === DataType.FLOAT16) out[inp.name] = { dtype: want, dims: f.dims, data: toFloat32(f) };
    else out[inp.name] = f;
  }
  return out;
}

/** Runs both models on the same seeded inputs in onnxruntime and measures how far `half` is from `full`. */
export async function compareFp16(half: Model, full: Model, what: string): Promise<Fp16Check> {
  let feeds: Record<string, Tensor>;
  try {
    feeds = checkFeeds(full);
  } catch (e) {
    if (e instanceof ShearsError) return { what, skipped: e.message };
    throw e;
  }
  const run = async (m: Model) => {
    const r = await createSession(m, { threads: 1 });
    try {
      return await r.run(retype(feeds, m));
    } finally {
      await r.release();
    }
  };
  let a: Record<string, Tensor>;
  let b: Record<string, Tensor>;
  try {
    [a, b] = [await run(half), await run(full)];
  } catch (e) {
    if (e instanceof ShearsError) return { what, skipped: e.message };
    throw e;
  }
  let worst = 0;
  for (const [name, t] of Object.entries(b)) {
    const u = a[name];
    if (!u || !isFloatType(t.dtype)) continue;
    const x = toFloat32(u);
    const y = toFloat32(t);
    let diff = 0;
    let scale = 0;
    for (let i = 0; i < y.length; i++) {
      diff = Math.max(diff, Math.abs(x[i]! - y[i]!));
      scale = Math.max(scale, Math.abs(y[i]!));
    }
    worst = Math.max(worst, scale > 0 ? diff / scale : diff);
  }
  return { what, maxRelErr: worst };
}

/** The float32 form of a float16 model for the run (the dense reference too), checked. */
export async function upcastForRun(model: Model): Promise<{ model: Model; ioFp16: string[]; report: Float32Report }> {
  const up = upcastFp16(model);
  const check = await compareFp16(model, up.model, 'the float16 model vs its float32 upcast');
  return { model: up.model, ioFp16: up.ioFp16, report: { tensors: up.tensors, checks: [check], castBack: false } };
}

/** The result cast back to float16 (inputs and outputs as they were), checked against the float32 result. */
export async function castBack(model: Model, ioFp16: readonly string[]): Promise<{ model: Model; check: Fp16Check }> {
  const half = convertFp16(model, { ioFp16 }).model;
  half.metadata.delete('shears.quantization');
  const check = await compareFp16(half, model, 'the float16 result vs the float32 result');
  return { model: half, check };
}

/** One line about a check, for the run's events. */
export function describeCheck(c: Fp16Check): { ok: boolean; message: string } {
  if (c.maxRelErr === undefined) return { ok: true, message: `${c.what}: not checked (${c.skipped})` };
  const ok = c.maxRelErr <= FP16_TOLERANCE;
  return { ok, message: `${c.what}: largest output difference ${c.maxRelErr.toExponential(2)} of the output range${ok ? '' : ` (more than float16 rounding, ${FP16_TOLERANCE})`}` };
}
