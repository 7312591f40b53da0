/**
 * Runs training steps: one onnxruntime session in this thread, or data-parallel replicas in worker threads.
 *
 * A training graph has hundreds of small nodes; many of onnxruntime's CPU kernels for them (Slice, Pad, Concat,
 * small Transposes) run on one thread, so one session with T threads keeps only about 1.5 of 2 cores busy on
 * ResNet-20. Replicas split the batch instead: each worker thread runs its own session on batch/R samples with
 * T/R threads, and the gradients (means over each slice) are averaged. With equal slices that is exactly the
 * gradient of the mean loss over the batch, except for BatchNorm in training mode, which normalises each slice
 * with its own statistics (as data-parallel training on several devices does without synchronised BN).
 *
 * Parameters, state, the batch and the results travel through SharedArrayBuffers; messages only say "step"
 * and "done". The caller updates `params` and `state` in place between steps.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { ShearsError } from '../errors.js';
import { DataType } from '../ir/dtype.js';
import type { Model } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import { encodeModel } from '../onnx/codec.js';
import { createSession, type Runner } from '../runtime/session.js';
import { softmaxRows } from './data.js';
import { TARGET } from '../autodiff/losses.js';
import type { TrainingGraph } from '../autodiff/training.js';

export interface StepGraph {
  /** Training graph built for batch / replicas samples. */
  model: Model;
  params: { name: string; dims: number[] }[];
  state: { input: string; output: string; dims: number[] }[];
  gradOutputs: string[];
  loss: string;
  output: string;
  input: string;
  /** Per-sample input dims. */
  sampleDims: number[];
  target: string;
  classes: number;
  /**
   * With distillation: `probs`, the graph input for softmax(teacher logits / T). With the teacher `model` (and
   * its `input`) every step computes it from the batch; without, the caller writes StepRunner.teacherProbs.
   */
  teacher?: { probs: string; temperature: number; model?: Model; input?: string };
}

/**
 * The step graph of a training graph: `run` is tg.model or a rewrite of it (lowerNchwc); the data input, its
 * per-sample dims and the class count are the caller's.
 */
export function stepGraphOf(tg: TrainingGraph, run: Model, data: { input: string; sampleDims: number[]; classes: number }, teacher?: StepGraph['teacher']): StepGraph {
  return {
    model: run,
    params: tg.params.map((p) => ({ name: p.name, dims: p.dims })),
    state: tg.state.map((s) => ({ input: s.input, output: s.output, dims: s.init.dims })),
    gradOutputs: tg.params.map((p) => tg.gradOutputs.get(p.name)!),
    loss: tg.loss,
    output: tg.output,
    input: data.input,
    sampleDims: data.sampleDims,
    target: TARGET,
    classes: data.classes,
    ...(teacher ? { teacher } : {}),
  };
}

export interface StepRunnerOptions {
  /** Samples per step over all replicas. */
  batch: number;
  /** Worker threads, each with its own session (1: one session in this thread). */
  replicas: number;
  /** Intra-op threads over all replicas (default: the cores Node sees). */
  threads?: number;
  spin?: boolean;
}

export interface StepResult {
  /** Mean loss over the batch. */
  loss: number;
  /** Model outputs [batch, classes]. */
  output: Float32Array;
  /** Gradients of the mean loss, in `params` order (valid until the next step). */
  grads: Float32Array[];
  /** New state values, in `state` order (valid until the next step). */
  state: Float32Array[];
}

export interface StepRunner {
  readonly replicas: number;
  /** Fed to every step; update in place. */
  readonly params: Float32Array[];
  readonly state: Float32Array[];
  /** The batch [batch, ...sampleDims] and its targets [batch, classes], written by the caller before a step. */
  readonly x: Float32Array;
  readonly targets: Float32Array;
  /** The teacher's probabilities [batch, classes], written by the caller when the step graph has no teacher model. */
  readonly teacherProbs?: Float32Array;
  step(): Promise<StepResult>;
  release(): Promise<void>;
}

/**
 * Replicas used when not given: one per core, at most 4, while the batch splits evenly into slices of at least
 * 32 samples. Measured on a 2-core machine only (ResNet-20, batch 128: 2 replicas of 1 thread each).
 */
export function defaultReplicas(batch: number, threads = availableParallelism()): number {
  let r = 1;
  while (r * 2 <= Math.min(threads, 4) && batch % (r * 2) === 0 && batch / (r * 2) >= 32) r *= 2;
  return r;
}

const size = (dims: number[]) => dims.reduce((a, b) => a * b, 1);

/** Float32Array views laid end to end over one buffer. */
function views(buf: ArrayBufferLike, lens: number[], offset = 0): Float32Array[] {
  let o = offset;
  return lens.map((n) => {
    const v = new Float32Array(buf, o * 4, n);
    o += n;
    return v;
  });
}

export async function createStepRunner(graph: StepGraph, opts: StepRunnerOptions): Promise<StepRunner> {
  const R = opts.replicas;
  if (!Number.isInteger(R) || R < 1) throw new ShearsError(`replicas must be a positive integer, got ${R}`);
  if (opts.batch % R !== 0) throw new ShearsError(`the batch of ${opts.batch} does not split into ${R} equal replicas`);
  return R === 1 ? inProcess(graph, opts) : workers(graph, opts);
}

async function inProcess(graph: StepGraph, opts: StepRunnerOptions): Promise<StepRunner> {
  const cfg = { spin: opts.spin ?? false, ...(opts.threads ? { threads: opts.threads } : {}) };
  const B = opts.batch;
  const session = await createSession(graph.model, cfg);
  const teacher = graph.teacher?.model ? await createSession(graph.teacher.model, cfg) : undefined;
  const params = graph.params.map((p) => new Float32Array(size(p.dims)));
  const state = graph.state.map((s) => new Float32Array(size(s.dims)));
  const x = new Float32Array(B * size(graph.sampleDims));
  const targets = new Float32Array(B * graph.classes);
  const probs = new Float32Array(B * graph.classes);
  const f32 = (dims: number[], data: Float32Array): Tensor => ({ dtype: DataType.FLOAT, dims, data });
  const feeds: Record<string, Tensor> = {};
  graph.params.forEach((p, k) => (feeds[p.name] = f32(p.dims, params[k]!)));
  graph.state.forEach((s, k) => (feeds[s.input] = f32(s.dims, state[k]!)));
  feeds[graph.input] = f32([B, ...graph.sampleDims], x);
  feeds[graph.target] = f32([B, graph.classes], targets);
  if (graph.teacher) feeds[graph.teacher.probs] = f32([B, graph.classes], probs);
  return {
    replicas: 1,
    params,
    state,
    x,
    targets,
    ...(graph.teacher && !teacher ? { teacherProbs: probs } : {}),
    async step() {
      if (teacher && graph.teacher) await teacherProbs(teacher, { input: graph.teacher.input ?? graph.input, temperature: graph.teacher.temperature }, feeds[graph.input]!, B, graph.classes, probs);
      const res = await session.run(feeds);
      return {
        loss: Number(res[graph.loss]!.data[0]),
        output: res[graph.output]!.data as Float32Array,
        grads: graph.gradOutputs.map((n) => res[n]!.data as Float32Array),
        state: graph.state.map((s) => res[s.output]!.data as Float32Array),
      };
    },
    async release() {
      await session.release();
      await teacher?.release();
    },
  };
}

/** softmax(teacher(x) / T) into out. */
export async function teacherProbs(teacher: Runner, spec: { input: string; temperature: number }, x: Tensor, rows: number, classes: number, out: Float32Array): Promise<void> {
  const y = (await teacher.run({ [spec.input]: x }))[teacher.outputNames[0]!]!;
  softmaxRows(y.data as Float32Array, rows, classes, spec.temperature, out);
}

/** What a replica worker gets at start (replica-worker.ts): the step graph with the models serialised. */
export interface ReplicaInit extends Omit<StepGraph, 'model' | 'teacher'> {
  index: number;
  replicas: number;
  batch: number;
  threads: number;
  spin: boolean;
  model: Uint8Array;
  teacher?: { probs: string; temperature: number; model?: Uint8Array; input?: string };
  /**
   * Shared: params then state (read), the whole batch, targets and teacher probabilities (read), outputs (each
   * writes its rows).
   */
  shared: { values: SharedArrayBuffer; x: SharedArrayBuffer; targets: SharedArrayBuffer; probs: SharedArrayBuffer; output: SharedArrayBuffer; loss: SharedArrayBuffer };
  /** This replica's gradients then new state (written). */
  results: SharedArrayBuffer;
}

export type ReplicaMessage = { kind: 'ready' } | { kind: 'done' } | { kind: 'error'; message: string };

async function workers(graph: StepGraph, opts: StepRunnerOptions): Promise<StepRunner> {
  const R = opts.replicas;
  const B = opts.batch;
  const threads = Math.max(1, Math.floor((opts.threads ?? availableParallelism()) / R));
  const pLens = graph.params.map((p) => size(p.dims));
  const sLens = graph.state.map((s) => size(s.dims));
  const nP = pLens.reduce((a, b) => a + b, 0);
  const nS = sLens.reduce((a, b) => a + b, 0);
  const shared = {
    values: new SharedArrayBuffer((nP + nS) * 4),
    x: new SharedArrayBuffer(B * size(graph.sampleDims) * 4),
    targets: new SharedArrayBuffer(B * graph.classes * 4),
    probs: new SharedArrayBuffer(graph.teacher ? B * graph.classes * 4 : 0),
    output: new SharedArrayBuffer(B * graph.classes * 4),
    loss: new SharedArrayBuffer(R * 8),
  };
  const results = Array.from({ length: R }, () => new SharedArrayBuffer((nP + nS) * 4));
  const model = encodeModel(graph.model);
  const teacher = graph.teacher ? { ...graph.teacher, model: graph.teacher.model ? encodeModel(graph.teacher.model) : undefined } : undefined;
  const url = new URL('./replica-worker.js', import.meta.url);
  const pool: Worker[] = [];
  const exited = new Set<Worker>();
  let failure: Error | undefined;
  const waiting = new Map<Worker, { resolve: () => void; reject: (e: Error) => void }>();
  const settle = (w: Worker, e?: Error) => {
    const p = waiting.get(w);
    if (!p) return;
    waiting.delete(w);
    if (e) p.reject(e);
    else p.resolve();
  };
  const { teacher: _teacher, model: _model, ...names } = graph;
  for (let i = 0; i < R; i++) {
    const init: ReplicaInit = { ...names, index: i, replicas: R, batch: B / R, threads, spin: opts.spin ?? false, model, shared, results: results[i]!, ...(teacher ? { teacher } : {}) };
    const w = new Worker(url, { workerData: init });
    w.on('message', (m: ReplicaMessage) => settle(w, m.kind === 'error' ? new ShearsError(`training replica ${i}: ${m.message}`) : undefined));
    w.on('error', (e) => {
      failure = e;
      settle(w, new ShearsError(`training replica ${i} failed: ${e.message}`));
    });
    w.on('exit', (code) => {
      exited.add(w);
      settle(w, new ShearsError(`training replica ${i} exited (code ${code})`));
    });
    pool.push(w);
  }
  const wait = (w: Worker) => new Promise<void>((resolve, reject) => waiting.set(w, { resolve, reject }));
  // Workers hold the process only while the caller waits on them: a caller that throws without release()
  // does not leave Node running.
  const all = async (send: boolean) => {
    for (const w of pool) w.ref();
    try {
      await Promise.all(pool.map((w) => {
        const p = wait(w);
        if (send) w.postMessage('step');
        return p;
      }));
    } finally {
      for (const w of pool) w.unref();
    }
  };
  try {
    await all(false); // 'ready': sessions created
  } catch (e) {
    await Promise.all(pool.map((w) => w.terminate()));
    throw e;
  }

  const values = views(shared.values, [...pLens, ...sLens]);
  const params = values.slice(0, pLens.length);
  const state = values.slice(pLens.length);
  const res = results.map((buf) => views(buf, [...pLens, ...sLens]));
  const loss = new Float64Array(shared.loss);
  const output = new Float32Array(shared.output);
  const gradSum = pLens.map((n) => new Float32Array(n));
  const stateMean = sLens.map((n) => new Float32Array(n));
  return {
    replicas: R,
    params,
    state,
    x: new Float32Array(shared.x),
    targets: new Float32Array(shared.targets),
    ...(graph.teacher && !graph.teacher.model ? { teacherProbs: new Float32Array(shared.probs) } : {}),
    async step() {
      if (failure) throw new ShearsError(`a training replica failed: ${failure.message}`);
      await all(true);
      // Mean over replicas, in a fixed order (deterministic for a given replica count).
      const mean = (k: number, out: Float32Array) => {
        out.set(res[0]![k]!);
        for (let r = 1; r < R; r++) {
          const v = res[r]![k]!;
          for (let i = 0; i < out.length; i++) out[i] += v[i]!;
        }
        for (let i = 0; i < out.length; i++) out[i]! /= R;
      };
      gradSum.forEach((g, k) => mean(k, g));
      stateMean.forEach((s, k) => mean(pLens.length + k, s));
      let l = 0;
      for (let r = 0; r < R; r++) l += loss[r]!;
      return { loss: l / R, output, grads: gradSum, state: stateMean };
    },
    async release() {
      await Promise.all(pool.filter((w) => !exited.has(w)).map((w) => {
        w.ref();
        const gone = new Promise<void>((resolve) => w.once('exit', () => resolve()));
        w.postMessage('close');
        return gone;
      }));
    },
  };
}
