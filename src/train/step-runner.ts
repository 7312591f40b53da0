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
import { availableParallelism, platform, type WorkerThread } from '../fs/platform.js';
import { ShearsError } from '../errors.js';
import type { Model } from '../ir/graph.js';
import { encodeModel } from '../onnx/codec.js';
import { createSession } from '../runtime/session.js';
import { ReplicaCore, type CoreGraph } from './replica-core.js';
import { createGate, holdExitForCalls } from './replica-gate.js';
import { TARGET } from '../autodiff/losses.js';
import type { TrainingGraph } from '../autodiff/training.js';

/** The training graph of one micro-batch and how to feed it (replica-core.ts CoreGraph, with the models). */
export interface StepGraph extends Omit<CoreGraph, 'teacher'> {
  /** Training graph built for batch / (replicas x accumulate) samples. */
  model: Model;
  /**
   * With distillation: `probs`, the graph input for softmax(teacher logits / T) (or, `kind: 'raw'`, the
   * teacher's outputs). With the teacher `model` (and its `input`) every step computes it from the batch;
   * without, the caller writes StepRunner.teacherProbs.
   */
  teacher?: NonNullable<CoreGraph['teacher']> & { model?: Model };
}

/**
 * The step graph of a training graph: `run` is tg.model or a rewrite of it (lowerNchwc); the data input, its
 * per-sample dims and the class count are the caller's.
 */
export function stepGraphOf(tg: TrainingGraph, run: Model, data: { input: string; sampleDims: number[]; classes: number; targetDims?: number[]; outputWidth?: number }, teacher?: StepGraph['teacher']): StepGraph {
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
    ...(data.targetDims ? { targetDims: data.targetDims } : {}),
    ...(data.outputWidth !== undefined ? { outputWidth: data.outputWidth } : {}),
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
  /**
   * Micro-batches each replica runs one after the other per step, averaging their gradients (gradient
   * accumulation; default 1): the step graph is built for batch / (replicas * accumulate) samples.
   */
  accumulate?: number;
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
 * 32 samples. Measured on 2-core machines only (ResNet-20, batch 128, bench/train.js throughput): 2 replicas of
 * 1 thread each beat one session of 2 threads on AVX-512 EPYC and Intel Xeon (235 vs 314 ms) and on an AVX2-only
 * EPYC (process CPU time per step 660 ms vs 750 ms; 4 replicas on 2 cores: 712 ms).
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
  const K = opts.accumulate ?? 1;
  if (!Number.isInteger(K) || K < 1 || (opts.batch / R) % K !== 0) throw new ShearsError(`the batch of ${opts.batch} does not split into ${R} replica(s) of ${K} equal micro-batches`);
  return R === 1 ? inProcess(graph, opts) : workers(graph, opts);
}

/** Samples per training-graph run: the batch split over replicas and accumulation steps. */
function microBatch(opts: StepRunnerOptions): number {
  return opts.batch / opts.replicas / (opts.accumulate ?? 1);
}

async function inProcess(graph: StepGraph, opts: StepRunnerOptions): Promise<StepRunner> {
  const cfg = { spin: opts.spin ?? false, ...(opts.threads ? { threads: opts.threads } : {}) };
  const B = opts.batch;
  const session = await createSession(graph.model, cfg);
  const teacher = graph.teacher?.model ? await createSession(graph.teacher.model, cfg) : undefined;
  const core = new ReplicaCore(session, teacher, graph, microBatch(opts), opts.accumulate ?? 1);
  const pLens = graph.params.map((p) => size(p.dims));
  const sLens = graph.state.map((s) => size(s.dims));
  const total = [...pLens, ...sLens].reduce((a, b) => a + b, 0);
  const values = new Float32Array(total);
  const results = new Float32Array(total);
  const io = {
    values,
    x: new Float32Array(B * size(graph.sampleDims)),
    targets: new Float32Array(B * graph.classes),
    output: new Float32Array(B * (graph.outputWidth ?? graph.classes)),
    results,
    ...(graph.teacher && !teacher ? { probs: new Float32Array(B * graph.classes) } : {}),
  };
  const vs = views(values.buffer, [...pLens, ...sLens]);
  const rs = views(results.buffer, [...pLens, ...sLens]);
  return {
    replicas: 1,
    params: vs.slice(0, pLens.length),
    state: vs.slice(pLens.length),
    x: io.x,
    targets: io.targets,
    ...(io.probs ? { teacherProbs: io.probs } : {}),
    async step() {
      const loss = await core.step(io);
      return { loss, output: io.output, grads: rs.slice(0, pLens.length), state: rs.slice(pLens.length) };
    },
    release: () => core.release(),
  };
}

/** What a replica worker gets at start (replica-worker.ts): the step graph with the models serialised. */
export interface ReplicaInit extends Omit<StepGraph, 'model' | 'teacher'> {
  index: number;
  replicas: number;
  /** Samples per run of the training graph, and runs per step. */
  micro: number;
  runs: number;
  threads: number;
  spin: boolean;
  model: Uint8Array;
  teacher?: NonNullable<CoreGraph['teacher']> & { model?: Uint8Array };
  /**
   * Shared: params then state (read), the whole batch, targets and teacher probabilities (read), outputs (each
   * writes its rows).
   */
  shared: { values: SharedArrayBuffer; x: SharedArrayBuffer; targets: SharedArrayBuffer; probs: SharedArrayBuffer; output: SharedArrayBuffer; loss: SharedArrayBuffer };
  /** This replica's gradients then new state (written). */
  results: SharedArrayBuffer;
  /** The exit gate of all replicas (replica-gate.ts). */
  gate: SharedArrayBuffer;
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
    output: new SharedArrayBuffer(B * (graph.outputWidth ?? graph.classes) * 4),
    loss: new SharedArrayBuffer(R * 8),
  };
  const results = Array.from({ length: R }, () => new SharedArrayBuffer((nP + nS) * 4));
  const model = encodeModel(graph.model);
  const teacher = graph.teacher ? { ...graph.teacher, model: graph.teacher.model ? encodeModel(graph.teacher.model) : undefined } : undefined;
  const url = new URL('./replica-worker.js', import.meta.url);
  // From the first worker on, process exit waits for the replicas' onnxruntime calls (replica-gate.ts).
  const gate = createGate(R);
  const unhold = holdExitForCalls(gate);
  const host = platform();
  if (!host.startWorker) throw new ShearsError(`${R} training replicas need worker threads, which the ${host.name} platform cannot start: use one replica`);
  const pool: WorkerThread[] = [];
  const exited = new Set<WorkerThread>();
  let failure: Error | undefined;
  const waiting = new Map<WorkerThread, { resolve: () => void; reject: (e: Error) => void }>();
  const settle = (w: WorkerThread, e?: Error) => {
    const p = waiting.get(w);
    if (!p) return;
    waiting.delete(w);
    if (e) p.reject(e);
    else p.resolve();
  };
  const { teacher: _teacher, model: _model, ...names } = graph;
  for (let i = 0; i < R; i++) {
    const init: ReplicaInit = { ...names, index: i, replicas: R, micro: microBatch(opts), runs: opts.accumulate ?? 1, threads, spin: opts.spin ?? false, model, shared, results: results[i]!, gate, ...(teacher ? { teacher } : {}) };
    const w = host.startWorker(url, init);
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
  const wait = (w: WorkerThread) => new Promise<void>((resolve, reject) => waiting.set(w, { resolve, reject }));
  // Workers hold the process only while the caller waits on them: a caller that throws without release()
  // does not leave Node running.
  // A step settles once every replica has answered, so that none is still running when the caller goes on (to
  // release, or to exit).
  const all = async () => {
    for (const w of pool) w.ref();
    try {
      const answers = await Promise.allSettled(pool.map((w) => {
        const p = wait(w);
        w.postMessage('step');
        return p;
      }));
      const failed = answers.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    } finally {
      for (const w of pool) w.unref();
    }
  };
  // Every worker answers 'ready' (session created) or 'error' (and then ends by itself). On any error the ready
  // ones are closed, never terminated: terminating a thread inside an onnxruntime call aborts the process.
  for (const w of pool) w.ref();
  const started = await Promise.allSettled(pool.map((w) => wait(w)));
  for (const w of pool) w.unref();
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.all(pool.map((w, i) => {
      if (exited.has(w)) return undefined;
      w.ref();
      const gone = new Promise<void>((resolve) => w.once('exit', () => resolve()));
      if (started[i]!.status === 'fulfilled') w.postMessage('close');
      return gone;
    }));
    unhold();
    throw failed.reason;
  }

  const values = views(shared.values, [...pLens, ...sLens]);
  const params = values.slice(0, pLens.length);
  const state = values.slice(pLens.length);
  const res = results.map((buf) => views(buf, [...pLens, ...sLens]));
  const loss = new Float64Array(shared.loss);
  const output = new Float32Array(shared.output);
  const gradSum = pLens.map((n) => new Float32Array(n));
  const stateMean = sLens.map((n) => new Float32Array(n));
  let running: Promise<unknown> | undefined;
  let released = false;
  return {
    replicas: R,
    params,
    state,
    x: new Float32Array(shared.x),
    targets: new Float32Array(shared.targets),
    ...(graph.teacher && !graph.teacher.model ? { teacherProbs: new Float32Array(shared.probs) } : {}),
    async step() {
      if (failure) throw new ShearsError(`a training replica failed: ${failure.message}`);
      if (released) throw new Error('StepRunner.step() after release()');
      if (running) throw new Error('StepRunner.step() while a step is running');
      const p = all();
      running = p;
      try {
        await p;
      } finally {
        running = undefined;
      }
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
      if (released) return;
      released = true;
      // A step still running (a caller that did not wait for it) finishes first.
      await running?.catch(() => undefined);
      await Promise.all(pool.filter((w) => !exited.has(w)).map((w) => {
        w.ref();
        const gone = new Promise<void>((resolve) => w.once('exit', () => resolve()));
        w.postMessage('close');
        return gone;
      }));
      unhold();
    },
  };
}
