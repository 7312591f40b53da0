/**
 * Fine-tuning a language model on token data (data/tokens.ts) inside onnxruntime: each step takes `batch` windows
 * at seeded random offsets of the training stream, and the training graph (autodiff/training.ts) computes the
 * next-token cross-entropy averaged over every position of the [B, T, V] logits (targets one-hot [B, T, V]),
 * plus, with a teacher, T^2 KL(teacher || student) on the per-position distributions at temperature T (the
 * teacher's softmax computed by onnxruntime, appended to its graph). The optimizer updates the weights in JS
 * (train/optim.ts); pruning masks stay enforced. Validation: bits per token (per byte) on evenly spaced windows
 * (metrics/perplexity.ts), before and after.
 */
import { ShearsError } from '../errors.js';
import { TARGET, TEACHER } from '../autodiff/losses.js';
import { addGradients, buildTrainingGraph } from '../autodiff/training.js';
import { bindTokens, type TokenDataset } from '../data/tokens.js';
import { modelInputs } from '../data/feeds.js';
import { cloneModel } from '../ir/clone.js';
import { removeDeadNodes } from '../ir/edit.js';
import { inferShapes } from '../analysis/shapes.js';
import { DataType } from '../ir/dtype.js';
import type { Model, Node } from '../ir/graph.js';
import { floatView, type Tensor } from '../ir/tensor.js';
import { evaluatePerplexity, type PerplexityReport } from '../metrics/perplexity.js';
import { mixedSeedRng } from '../random.js';
import { createSession, type Runner } from '../runtime/session.js';
import { getMasks } from '../sparsity/masks.js';
import { clipGradNorm, createOptimizer, type OptimizerSpec, type ParamState } from './optim.js';
import { scheduleAt, type ScheduleSpec } from './schedule.js';

export interface LMFinetuneOptions {
  /** Training tokens (windows drawn at random offsets). */
  train: TokenDataset;
  /** Validation tokens: `valWindows` windows evenly spaced (or a subset's windows as they are). */
  val?: TokenDataset;
  /** Validation windows of a whole stream (default 64). */
  valWindows?: number;
  /** Optimizer steps (default 120). */
  steps?: number;
  /** Windows per step (default 16). */
  batch?: number;
  /** Peak learning rate (default 1e-3 for AdamW, 0.01 for SGD). */
  lr?: number;
  /** Default AdamW, weight decay 0.01. */
  optimizer?: OptimizerSpec;
  /** Default cosine to 0. */
  schedule?: ScheduleSpec;
  /** Clip the global gradient norm (default 1). */
  clipNorm?: number;
  /** Distil from this model's per-position next-token distributions. */
  teacher?: Model;
  /** Weight of the distillation term (CE gets 1 - w; default 0.5) and its temperature (default 1). */
  kdWeight?: number;
  kdTemperature?: number;
  /** Initializers never trained. */
  frozen?: readonly string[];
  /** Masks to keep enforced (default: the masks stored in the model; false: none). */
  masks?: ReadonlyMap<string, Uint8Array> | false;
  seed?: number;
  threads?: number;
  /** Called after every step. */
  progress?: (p: LMProgress) => void;
  /** Stop request, checked before every step: the run ends early with the model as trained so far. */
  signal?: AbortSignal;
}

export interface LMProgress {
  step: number;
  steps: number;
  /** This step's loss and the mean over the steps so far. */
  loss: number;
  meanLoss: number;
  lr: number;
  secondsPerStep: number;
}

export interface LMFinetuneResult {
  model: Model;
  steps: number;
  seconds: number;
  /** Mean wall time of a training step (the validation passes not counted). */
  secondsPerStep: number;
  /** The loss of every step (cross-entropy in nats, plus the distillation term with a teacher). */
  losses: number[];
  valBefore?: PerplexityReport;
  valAfter?: PerplexityReport;
  /** Windows and tokens per step. */
  batch: number;
  context: number;
}

const PROBS = 'shears_lm/teacher_probs';

/** The teacher with its logits turned into softmax(logits / T) on the last axis (its only output). */
function teacherProbsModel(teacher: Model, temperature: number): Model {
  const m = cloneModel(teacher);
  const g = m.graph;
  const out = g.outputs[0]!.name;
  const node = (name: string, opType: string, inputs: string[], outputs: string[], attrs: [string, number][] = []): Node => ({
    name, opType, domain: '', inputs, outputs, attrs: new Map(attrs.map(([k, v]) => [k, { kind: 'int', value: v }])),
  });
  let logits = out;
  if (temperature !== 1) {
    g.initializers.set('shears_lm/inv_t', { dtype: DataType.FLOAT, dims: [], data: Float32Array.of(1 / temperature) });
    g.nodes.push(node('shears_lm/scale', 'Mul', [out, 'shears_lm/inv_t'], ['shears_lm/scaled']));
    logits = 'shears_lm/scaled';
  }
  g.nodes.push(node('shears_lm/softmax', 'Softmax', [logits], [PROBS], [['axis', -1]]));
  g.outputs = [{ name: PROBS }];
  return m;
}

/**
 * The model with its integer shape computations (Shape -> Gather -> Div -> Slice ends, Reshape targets) folded
 * into initializers at the training shape: gradient rules such as Slice's need those values as constants. Float
 * values are left as they are, so no new value becomes trainable.
 */
export function foldShapeValues(model: Model, inputShapes: Record<string, number[]>): Model {
  const m = cloneModel(model);
  const g = m.graph;
  const info = inferShapes(m, { inputShapes });
  for (const n of g.nodes) {
    for (const v of n.inputs) {
      if (!v || g.initializers.has(v)) continue;
      const c = info.constants.get(v);
      if (c && c.dtype !== DataType.FLOAT && c.dtype !== DataType.DOUBLE && c.dtype !== DataType.FLOAT16) g.initializers.set(v, c);
    }
  }
  g.nodes = g.nodes.filter((n) => !n.outputs.every((o) => !o || g.initializers.has(o)));
  removeDeadNodes(g);
  return m;
}

/** A copy of `model` with the named initializers holding `values`. */
function withValues(model: Model, names: string[], values: Float32Array[]): Model {
  const m = cloneModel(model);
  names.forEach((k, i) => {
    const t = m.graph.initializers.get(k)!;
    m.graph.initializers.set(k, { ...t, dims: [...t.dims], data: Float32Array.from(values[i]!) });
  });
  return m;
}

/** Fine-tunes a language model on token data; returns a new model (the input is not modified). */
export async function finetuneLM(model: Model, opts: LMFinetuneOptions): Promise<LMFinetuneResult> {
  const t0 = performance.now();
  const ins = modelInputs(model);
  if (ins.length !== 1) throw new ShearsError(`language-model fine-tuning feeds one input (token ids), and the model has ${ins.length}: ${ins.map((i) => i.name).join(', ')}`);
  const inputName = ins[0]!.name;
  const train = bindTokens(opts.train, model);
  const val = opts.val ? bindTokens(opts.val, model) : undefined;
  if (opts.teacher) bindTokens(train, opts.teacher, 'the teacher');
  const T = train.context!;
  if (val && val.context !== T) throw new ShearsError(`the validation windows are ${val.context} tokens, the training windows ${T}`);
  const B = opts.batch ?? 16;
  const steps = opts.steps ?? 120;
  if (!Number.isInteger(B) || B < 1) throw new ShearsError(`the batch must be a positive integer, not ${B}`);
  if (!Number.isInteger(steps) || steps < 1) throw new ShearsError(`the step count must be a positive integer, not ${steps}`);
  const fixed = ins[0]!.type?.shape?.[0];
  if (typeof fixed === 'number' && fixed > 0 && fixed !== B) throw new ShearsError(`the model's input '${inputName}' has a fixed batch of ${fixed}: give --batch ${fixed}, or make the batch dynamic with \`shears rebatch\``);
  const kdW = opts.teacher ? opts.kdWeight ?? 0.5 : 0;
  const kdT = opts.kdTemperature ?? 1;
  const loss = opts.teacher ? { ce: { weight: 1 - kdW }, kd: { weight: kdW, temperature: kdT } } : { ce: {} };
  const tg = await buildTrainingGraph(foldShapeValues(model, { [inputName]: [B, T] }), { batch: B, loss, inputShapes: { [inputName]: [B, T] }, ...(opts.frozen ? { frozen: opts.frozen } : {}) });
  const outDims = tg.dataInputs.find((d) => d.name === TARGET)!.dims;
  if (outDims.length !== 3 || outDims[0] !== B || outDims[1] !== T) throw new ShearsError(`language-model fine-tuning needs logits [N, T, V]; the output '${tg.output}' is [${outDims.join(', ')}] at [${B}, ${T}]`);
  const V = outDims[2]!;
  if (train.stream.maxId >= V) throw new ShearsError(`${train.stream.path}: token id ${train.stream.maxId} is outside the model's vocabulary of ${V}`);
  const masks = opts.masks === false ? new Map<string, Uint8Array>() : opts.masks ?? getMasks(model);
  const params: ParamState[] = tg.params.map((p) => {
    const value = Float32Array.from(p.init.data as Float32Array);
    const mask = masks.get(p.name);
    if (mask) for (let i = 0; i < value.length; i++) if (!mask[i]) value[i] = 0;
    return { name: p.name, value, decay: p.dims.length >= 2, ...(mask ? { mask } : {}) };
  });
  const optSpec: OptimizerSpec = opts.optimizer ?? { kind: 'adamw', weightDecay: 0.01 };
  const optim = createOptimizer(optSpec, params);
  const baseLr = opts.lr ?? (optSpec.kind === 'adamw' ? 1e-3 : 0.01);
  const sched = opts.schedule ?? { kind: 'cosine' };
  const clip = opts.clipNorm ?? 1;
  const cfg = { spin: false, ...(opts.threads ? { threads: opts.threads } : {}) };
  const current = () => withValues(model, tg.params.map((p) => p.name), params.map((p) => p.value));
  const validate = async (m: Model) => (val ? (await evaluatePerplexity(m, val, { limit: opts.valWindows ?? 64, batchSize: B, ...(opts.threads ? { threads: opts.threads } : {}) })).perplexity : undefined);
  const valBefore = await validate(model);

  let runner: Runner | undefined;
  let teacher: Runner | undefined;
  const losses: number[] = [];
  let trainSeconds = 0;
  try {
    runner = await createSession(tg.model, cfg);
    if (opts.teacher) teacher = await createSession(teacherProbsModel(opts.teacher, kdT), cfg);
    const gradNames = tg.params.map((p) => tg.gradOutputs.get(p.name)!);
    const target = new Float32Array(B * T * V);
    const rand = mixedSeedRng((opts.seed ?? 0) + 17);
    let sum = 0;
    for (let step = 0; step < steps; step++) {
      if (opts.signal?.aborted) break;
      const ts = performance.now();
      const pos = Array.from({ length: B }, () => Math.floor(rand() * train.size));
      const batch = await train.readBatch(pos);
      const targets = batch.targets!;
      target.fill(0);
      for (let i = 0; i < targets.length; i++) target[i * V + targets[i]!] = 1;
      const feeds: Record<string, Tensor> = { [inputName]: batch.x, [TARGET]: floatView([B, T, V], target) };
      tg.params.forEach((p, k) => (feeds[p.name] = floatView(p.dims, params[k]!.value)));
      if (teacher) feeds[TEACHER] = (await teacher.run({ [modelInputs(opts.teacher!)[0]!.name]: batch.x }, [PROBS]))[PROBS]!;
      const out = await runner.run(feeds, [tg.loss, ...gradNames]);
      const lossV = Number((out[tg.loss]!.data as Float32Array)[0]);
      if (!Number.isFinite(lossV)) throw new ShearsError(`training diverged at step ${step + 1} (loss ${lossV}): lower the learning rate`);
      const grads = gradNames.map((g) => out[g]!.data as Float32Array);
      if (clip > 0) clipGradNorm(grads, clip);
      const sv = scheduleAt(sched, baseLr, step, steps);
      optim.step(grads, sv.lr, sv.momentum);
      losses.push(lossV);
      sum += lossV;
      trainSeconds += (performance.now() - ts) / 1000;
      opts.progress?.({ step: step + 1, steps, loss: lossV, meanLoss: sum / losses.length, lr: sv.lr, secondsPerStep: trainSeconds / losses.length });
    }
  } finally {
    await runner?.release();
    await teacher?.release();
  }
  const out = current();
  const valAfter = await validate(out);
  const result: LMFinetuneResult = {
    model: out, steps: losses.length, seconds: (performance.now() - t0) / 1000, secondsPerStep: losses.length ? trainSeconds / losses.length : 0,
    losses, batch: B, context: T,
  };
  if (valBefore) result.valBefore = valBefore;
  if (valAfter) result.valAfter = valAfter;
  return result;
}

/**
 * Next-token cross-entropy gradients of every float weight of a language model (int64 [N, T] tokens in, logits
 * [N, T, V] out), summed over `batches` batches of `batch` windows of `data` (its windows in order): what Taylor
 * importance weighs the weights with. Computed by the autodiff training graph in onnxruntime.
 */
export async function lmWeightGradients(model: Model, data: TokenDataset, opts: { batch?: number; batches?: number; threads?: number } = {}): Promise<Map<string, Float32Array>> {
  const T = data.context;
  if (T === undefined) throw new ShearsError('token data for Taylor importance needs its window length (context=T)');
  const B = Math.max(1, Math.min(opts.batch ?? 8, data.size));
  const nb = Math.max(1, Math.min(opts.batches ?? 4, Math.floor(data.size / B)));
  const inputName = modelInputs(model)[0]!.name;
  const tg = await buildTrainingGraph(foldShapeValues(model, { [inputName]: [B, T] }), { batch: B, loss: { ce: {} }, inputShapes: { [inputName]: [B, T] } });
  const outDims = tg.dataInputs.find((d) => d.name === TARGET)!.dims;
  if (outDims.length !== 3 || outDims[0] !== B || outDims[1] !== T) throw new ShearsError(`Taylor importance on token data needs logits [N, T, V]; the output '${tg.output}' is [${outDims.join(', ')}] at [${B}, ${T}]`);
  const V = outDims[2]!;
  const runner = await createSession(tg.model, { spin: false, ...(opts.threads ? { threads: opts.threads } : {}) });
  const sums = new Map<string, Float32Array>();
  try {
    const target = new Float32Array(B * T * V);
    for (let b = 0; b < nb; b++) {
      const batch = await data.readBatch(Array.from({ length: B }, (_, i) => b * B + i));
      const targets = batch.targets!;
      target.fill(0);
      for (let i = 0; i < targets.length; i++) {
        if (targets[i]! >= V) throw new ShearsError(`token id ${targets[i]} is outside the model's vocabulary of ${V}`);
        target[i * V + targets[i]!] = 1;
      }
      const feeds: Record<string, Tensor> = { [inputName]: batch.x, [TARGET]: floatView([B, T, V], target) };
      for (const p of tg.params) feeds[p.name] = p.init;
      const res = await runner.run(feeds, [...tg.gradOutputs.values()]);
      addGradients(sums, res, tg.gradOutputs);
    }
  } finally {
    await runner.release();
  }
  return sums;
}
