/**
 * Rebatching a model exported with a static batch size (Ultralytics and many other exports fix it at 1): the
 * data inputs get a symbolic batch dimension, and every Reshape whose constant target starts with that batch
 * size while its input's first dimension is the batch gets 0 there (copy the input's dimension). Then the
 * result is checked in onnxruntime: a batch of different samples must give, sample by sample, what the original
 * model gives for each alone. What cannot be rebatched this way (batch sizes baked into other constants) fails
 * that check and is reported, never silently changed.
 */
import { ShearsError } from '../errors.js';
import { DataType } from '../ir/dtype.js';
import type { Model, Node } from '../ir/graph.js';
import { cloneModel } from '../ir/clone.js';
import { numel, toNumbers, type Tensor } from '../ir/tensor.js';
import { createSession } from '../runtime/session.js';
import { rng } from '../random.js';
import { inferShapes } from './shapes.js';
import { simplify } from './simplify.js';

export interface RebatchResult {
  model: Model;
  /** The batch size the inputs had. */
  from: number;
  /** Reshape nodes whose target now copies the batch dimension. */
  reshapes: string[];
  /** Largest relative difference between the batched run and the per-sample runs (the check). */
  maxRelDiff: number;
}

const BATCH = 'N';

function dataInputs(model: Model) {
  return model.graph.inputs.filter((i) => !model.graph.initializers.has(i.name));
}

/** A copy of `model` whose data inputs take any batch size; throws when the check in onnxruntime fails. */
export async function rebatch(model: Model, opts: { checkBatch?: number; tolerance?: number } = {}): Promise<RebatchResult> {
  const m = cloneModel(model);
  const ins = dataInputs(m);
  if (ins.length === 0) throw new ShearsError('the model has no data input');
  const firsts = ins.map((i) => i.type?.shape?.[0]);
  if (firsts.some((d) => typeof d !== 'number' || d < 1)) {
    throw new ShearsError(`every data input needs a static first dimension to rebatch (${ins.map((i, k) => `${i.name}: ${String(firsts[k])}`).join(', ')})`);
  }
  const from = firsts[0] as number;
  if (firsts.some((d) => d !== from)) throw new ShearsError(`the data inputs disagree on the batch size (${firsts.join(', ')})`);
  // Shape arithmetic folded to constants first (Constant nodes become initializers, Shape chains fold).
  simplify(m);
  for (const i of dataInputs(m)) i.type = { elemType: i.type!.elemType, shape: [BATCH, ...i.type!.shape!.slice(1)] };
  const reshapes: string[] = [];
  const retargeted = new Set<Node>();
  // Each rewrite fixes the dims downstream of it: repeat until nothing changes.
  for (let round = 0; round < 64; round++) {
    const info = inferShapes(m);
    let changed = false;
    for (const n of m.graph.nodes) {
      if (n.opType !== 'Reshape' || n.domain !== '' || retargeted.has(n)) continue;
      const target = n.inputs[1] ? m.graph.initializers.get(n.inputs[1]) : undefined;
      const inShape = info.types.get(n.inputs[0] ?? '')?.shape;
      if (!target || numel(target.dims) < 1 || inShape?.[0] !== BATCH) continue;
      const t = toNumbers(target);
      if (t[0] !== from) continue;
      const name = `${n.inputs[1]}/rebatched`;
      const data = BigInt64Array.from(t.map((v, i) => BigInt(i === 0 ? 0 : v)));
      m.graph.initializers.set(name, { dtype: DataType.INT64, dims: [...target.dims], data });
      n.inputs[1] = name;
      if (n.attrs.has('allowzero')) n.attrs.delete('allowzero');
      retargeted.add(n);
      reshapes.push(n.name);
      changed = true;
    }
    if (!changed) break;
  }
  for (const k of [...m.graph.initializers.keys()]) if (!m.graph.nodes.some((n) => n.inputs.includes(k)) && !m.graph.inputs.some((i) => i.name === k)) m.graph.initializers.delete(k);
  // Declared shapes of outputs and intermediates still say the old batch: outputs take the inferred ones,
  // value_info (optional hints) goes.
  const info = inferShapes(m);
  for (const o of m.graph.outputs) {
    const t = info.types.get(o.name);
    if (t?.shape && o.type) o.type = { elemType: o.type.elemType, shape: t.shape };
  }
  m.graph.valueInfo.clear();
  const maxRelDiff = await checkRebatched(model, m, opts.checkBatch ?? from + 2, opts.tolerance ?? 1e-4);
  return { model: m, from, reshapes, maxRelDiff };
}

/** Runs `batch` random samples through the rebatched model at once and each alone through the original. */
async function checkRebatched(original: Model, rebatched: Model, batch: number, tolerance: number): Promise<number> {
  const r = rng(5);
  const ins = dataInputs(original);
  const single = ins.map((i) => ({ name: i.name, elemType: i.type!.elemType, dims: i.type!.shape!.map((d) => (typeof d === 'number' ? d : 1)) }));
  if (single.some((s) => s.elemType !== DataType.FLOAT)) throw new ShearsError('rebatch checks float inputs only');
  const samples = Array.from({ length: batch }, () => single.map((s) => Float32Array.from({ length: numel(s.dims) }, () => r() * 2 - 1)));
  const a = await createSession(original, { threads: 1 });
  const b = await createSession(rebatched, { threads: 1 });
  try {
    const each: Record<string, Tensor>[] = [];
    for (const sample of samples) {
      each.push(await a.run(Object.fromEntries(single.map((s, k) => [s.name, { dtype: DataType.FLOAT, dims: s.dims, data: sample[k]! }]))));
    }
    const feeds: Record<string, Tensor> = {};
    single.forEach((s, k) => {
      const per = numel(s.dims);
      const data = new Float32Array(batch * per);
      samples.forEach((sample, j) => data.set(sample[k]!, j * per));
      feeds[s.name] = { dtype: DataType.FLOAT, dims: [batch * s.dims[0]!, ...s.dims.slice(1)], data };
    });
    let out: Record<string, Tensor>;
    try {
      out = await b.run(feeds);
    } catch (e) {
      throw new ShearsError(`rebatch check failed: ${(e as Error).message} (a batch size is baked into the graph beyond Reshape targets)`);
    }
    let worst = 0;
    for (const [name, t] of Object.entries(out)) {
      const ref = each.map((e) => e[name]!);
      const per = numel(ref[0]!.dims);
      if (numel(t.dims) !== per * batch || t.dims[0] !== ref[0]!.dims[0]! * batch) {
        throw new ShearsError(`rebatch check failed: output '${name}' is ${t.dims.join('x')} for ${batch} samples, ${ref[0]!.dims.join('x')} for one (a batch size is baked into another constant)`);
      }
      const got = toNumbers(t);
      let scale = 0;
      for (const e of ref) for (const v of toNumbers(e)) scale = Math.max(scale, Math.abs(v));
      ref.forEach((e, j) => {
        const want = toNumbers(e);
        for (let i = 0; i < per; i++) worst = Math.max(worst, Math.abs(got[j * per + i]! - want[i]!) / Math.max(scale, 1e-12));
      });
    }
    if (!(worst <= tolerance)) throw new ShearsError(`rebatch check failed: batched outputs differ from per-sample outputs by ${worst.toExponential(2)} (relative); a batch size is baked into the graph beyond Reshape targets`);
    return worst;
  } finally {
    await a.release();
    await b.release();
  }
}

/**
 * A rebatched model (rebatch above) given back its static batch: the data inputs declare `batch` again and the
 * outputs their inferred shapes. The Reshape targets keep 0 (copy the input's dimension), which is the same
 * at that batch: the model runs exactly as the original did, with its trained weights.
 */
export function withStaticBatch(model: Model, batch: number): Model {
  const m = cloneModel(model);
  for (const i of dataInputs(m)) if (i.type?.shape) i.type = { elemType: i.type.elemType, shape: [batch, ...i.type.shape.slice(1)] };
  const info = inferShapes(m);
  for (const o of m.graph.outputs) {
    const t = info.types.get(o.name);
    if (t?.shape && o.type) o.type = { elemType: o.type.elemType, shape: t.shape };
  }
  return m;
}

/**
 * Rebatches a model for training when its input has a static batch (rebatch above), or gives undefined when
 * that cannot be done safely (the check in onnxruntime failed, or the model has no static first dimension).
 */
export async function rebatchIfPossible(model: Model, keep: readonly string[] = []): Promise<Model | undefined> {
  // Values the caller reads besides the outputs (a matched intermediate tensor) are outputs while rebatching,
  // so that simplification keeps them and the check covers them.
  const extra = keep.filter((v) => !model.graph.outputs.some((o) => o.name === v));
  const types = extra.length ? inferShapes(model).types : undefined;
  const m = extra.length ? { ...model, graph: { ...model.graph, outputs: [...model.graph.outputs, ...extra.map((name) => ({ name, ...(types?.get(name) ? { type: types.get(name)! } : {}) }))] } } : model;
  try {
    const r = (await rebatch(m)).model;
    r.graph.outputs = r.graph.outputs.filter((o) => !extra.includes(o.name));
    return r;
  } catch (e) {
    if (e instanceof ShearsError) return undefined;
    throw e;
  }
}
