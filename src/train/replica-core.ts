/**
 * One replica's share of a training step (used in this thread when there is one replica, and by each worker of
 * replica-worker.ts otherwise): its rows of the batch run through the training graph in `runs` consecutive
 * micro-batches of `micro` samples (gradient accumulation), each from the current parameters; gradients are
 * averaged over the micro-batches, BatchNorm running statistics carry from one to the next.
 */
import { floatView, type Tensor } from '../ir/tensor.js';
import type { Runner } from '../runtime/session.js';
import { softmaxRows } from './logits.js';

/** What the core needs of the step graph (step-runner.ts StepGraph, without the models). */
export interface CoreGraph {
  params: { name: string; dims: number[] }[];
  state: { input: string; output: string; dims: number[] }[];
  gradOutputs: string[];
  loss: string;
  output: string;
  input: string;
  sampleDims: number[];
  target: string;
  /** Values per sample of the output, the target and the teacher's probabilities (the class count for classifiers). */
  classes: number;
  /** Per-sample dims of the target (default [classes]). */
  targetDims?: number[];
  /** Values per sample of the output when not `classes` (a detection head read against packed targets). */
  outputWidth?: number;
  /** 'softmax' (default): softmax(teacher / T) into `probs`; 'raw': the teacher's outputs as they are. */
  teacher?: { probs: string; temperature: number; input?: string; kind?: 'softmax' | 'raw' };
}

/** This replica's views of the step's data: all of them Float32Array views (shared memory or not). */
export interface CoreIO {
  /** Parameters then state, in graph order (read). */
  values: Float32Array;
  /** This replica's rows: samples, targets, teacher probabilities when the caller provides them (read). */
  x: Float32Array;
  targets: Float32Array;
  probs?: Float32Array;
  /** This replica's rows of the outputs (written). */
  output: Float32Array;
  /** Gradients then new state, in graph order (written). */
  results: Float32Array;
}

const size = (dims: number[]) => dims.reduce((a, b) => a * b, 1);

/** Runs one onnxruntime call (a worker marks them: replica-gate.ts). */
export type CallGuard = <T>(call: () => Promise<T>) => Promise<T>;
const unguarded: CallGuard = (call) => call();

export class ReplicaCore {
  private readonly local: Float32Array;
  private readonly lens: number[];
  private readonly feeds: Record<string, Tensor> = {};
  private readonly x: Float32Array;
  private readonly targets: Float32Array;
  private readonly probs: Float32Array;
  private readonly nParams: number;

  /**
   * `session` runs the training graph built for `micro` samples; `teacher`, when given, computes the teacher's
   * probabilities from each micro-batch (otherwise CoreIO.probs provides them, when the graph distils). Every
   * onnxruntime call goes through `guard`.
   */
  constructor(private readonly session: Runner, private readonly teacher: Runner | undefined, private readonly g: CoreGraph, private readonly micro: number, private readonly runs: number, private readonly guard: CallGuard = unguarded) {
    this.lens = [...g.params.map((p) => size(p.dims)), ...g.state.map((s) => size(s.dims))];
    this.nParams = g.params.reduce((a, p) => a + size(p.dims), 0);
    // onnxruntime-node does not accept SharedArrayBuffer-backed arrays: local copies are fed.
    this.local = new Float32Array(this.lens.reduce((a, b) => a + b, 0));
    let o = 0;
    const names = [...g.params.map((p) => [p.name, p.dims] as const), ...g.state.map((s) => [s.input, s.dims] as const)];
    names.forEach(([name, dims], k) => {
      this.feeds[name] = floatView(dims, this.local.subarray(o, o + this.lens[k]!));
      o += this.lens[k]!;
    });
    this.x = new Float32Array(micro * size(g.sampleDims));
    this.targets = new Float32Array(micro * g.classes);
    this.probs = new Float32Array(micro * g.classes);
    this.feeds[g.input] = floatView([micro, ...g.sampleDims], this.x);
    const td = g.targetDims ?? [g.classes];
    this.feeds[g.target] = floatView([micro, ...td], this.targets);
    if (g.teacher) this.feeds[g.teacher.probs] = floatView([micro, ...td], this.probs);
  }

  /** Runs the replica's rows; returns their mean loss. */
  async step(io: CoreIO): Promise<number> {
    const g = this.g;
    const m = this.micro;
    const per = size(g.sampleDims);
    const k = g.classes;
    this.local.set(io.values);
    let loss = 0;
    for (let r = 0; r < this.runs; r++) {
      this.x.set(io.x.subarray(r * m * per, (r + 1) * m * per));
      this.targets.set(io.targets.subarray(r * m * k, (r + 1) * m * k));
      const teacher = this.teacher;
      if (teacher && g.teacher) {
        const y = (await this.guard(() => teacher.run({ [g.teacher!.input ?? g.input]: this.feeds[g.input]! })))[teacher.outputNames[0]!]!;
        if (g.teacher.kind === 'raw') this.probs.set(y.data as Float32Array);
        else softmaxRows(y.data as Float32Array, m, k, g.teacher.temperature, this.probs);
      } else if (g.teacher && io.probs) this.probs.set(io.probs.subarray(r * m * k, (r + 1) * m * k));
      const res = await this.guard(() => this.session.run(this.feeds));
      loss += Number(res[g.loss]!.data[0]);
      io.output.set(res[g.output]!.data as Float32Array, r * m * (g.outputWidth ?? k));
      // Gradients: the first run writes, later ones add; the new state feeds the next run.
      let off = 0;
      g.gradOutputs.forEach((name, i) => {
        const d = res[name]!.data as Float32Array;
        const out = io.results.subarray(off, off + d.length);
        if (r === 0) out.set(d);
        else for (let j = 0; j < d.length; j++) out[j]! += d[j]!;
        off += this.lens[i]!;
      });
      g.state.forEach((s, i) => {
        const d = res[s.output]!.data as Float32Array;
        io.results.set(d, off);
        if (r + 1 < this.runs) this.local.set(d, off); // same layout: params|state and grads|state
        off += this.lens[g.params.length + i]!;
      });
    }
    if (this.runs > 1) {
      const grads = io.results.subarray(0, this.nParams);
      for (let j = 0; j < grads.length; j++) grads[j]! /= this.runs;
    }
    return loss / this.runs;
  }

  async release(): Promise<void> {
    await this.guard(() => this.session.release());
    const teacher = this.teacher;
    if (teacher) await this.guard(() => teacher.release());
  }
}
