/**
 * Replica start/stop stress (not in CI, not a timing benchmark): hunts the intermittent SIGABRT
 * ("terminate called after throwing Napi::Error") of data-parallel training replicas (src/train/step-runner.ts).
 *
 *   npx tsc -p . && node dist/bench/replica-stress.js [--cycles N] [--fresh K] [--replicas R]
 *
 * Runs N cycles (default 500) one after the other in one process, plus K (default 0) cycles each in a fresh child
 * process that exits as soon as its cycle ends. The cycles rotate through (the fresh ones add `exitmid`):
 *   ok       start R replicas on a tiny CNN (with a teacher model and 2 accumulation runs per step, so that a step
 *            awaits between onnxruntime calls), run 1-2 steps, release;
 *   badload  a start that fails (a model onnxruntime cannot load): rejected, nothing left running;
 *   steperr  a step that fails in replica 0 only (an out-of-range Gather fed from its rows) while the others are
 *            still running, then release at once;
 *   after    the same failed step, a second one (fails again: no replica may still be running the first), release;
 *   noawait  the failed step, release() called but not awaited, the process goes on (fresh: exits at once);
 *   exitmid  (fresh only) process.exit() while the replicas are inside a long onnxruntime run: before
 *            train/replica-gate.ts this aborted the process ("terminate called after throwing an instance of
 *            'Napi::Error'") about one time in two.
 * The in-process cycles run in a child process too, restarted after an abort, so that an abort is counted instead
 * of ending the run. Prints one JSON line: {cycles, aborts, errors, seconds, cpu} (cpu: seconds of CPU of this
 * process and its children), plus the first few error and abort messages.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildTrainingGraph } from '../src/autodiff/training.js';
import { TEACHER } from '../src/autodiff/losses.js';
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/graph.js';
import { rng } from '../src/random.js';
import { createStepRunner, stepGraphOf, type StepGraph } from '../src/train/step-runner.js';

const KINDS = ['ok', 'badload', 'steperr', 'after', 'noawait'] as const;
const FRESH_KINDS = [...KINDS, 'exitmid'] as const;
type Kind = (typeof FRESH_KINDS)[number];

const args = process.argv.slice(2);
const flag = (name: string, dflt: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const R = flag('--replicas', 2);
const B = 16 * R;

/** Conv -> Relu -> AvgPool -> Gemm over [N, 1, 8, 8]; `check` also outputs a Gather indexed by max(input). */
function cnn(check: boolean): Model {
  const r = rng(1);
  const b = new GraphBuilder('stress');
  b.input('input', ['N', 1, 8, 8]);
  const f = (dims: number[], s: number) => ({ dtype: DataType.FLOAT, dims, data: Float32Array.from({ length: dims.reduce((a, c) => a * c, 1) }, () => (r() - 0.5) * s) });
  let h = b.node('Relu', [b.node('Conv', ['input', b.init('w1', f([6, 1, 3, 3], 0.6)), b.init('b1', f([6], 0.1))], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [2, 2] })]);
  h = b.node('Flatten', [b.node('AveragePool', [h], { kernel_shape: [2, 2], strides: [2, 2] })]);
  b.node('Gemm', [h, b.init('w2', f([3, 24], 0.4)), b.init('b2', f([3], 0.1))], { transB: 1 }, { output: 'logits' });
  b.output('logits');
  const m = b.model(17);
  if (!check) return m;
  // An extra output that onnxruntime fails to compute when the largest input value is 2 or more.
  const top = b.node('Cast', [b.node('ReduceMax', ['input'], { keepdims: 0 })], { to: DataType.INT64 });
  b.node('Gather', [b.init('two', { dtype: DataType.FLOAT, dims: [2], data: new Float32Array(2) }), top], {}, { output: 'check' });
  b.output('check');
  return b.model(17);
}

async function stepGraph(kind: Kind, batch: number): Promise<StepGraph> {
  const micro = batch / R / 2;
  const tg = await buildTrainingGraph(cnn(false), { batch: micro, loss: { ce: { weight: 0.5 }, kd: { weight: 0.5, temperature: 2 } }, inputShapes: { input: [micro, 1, 8, 8] } });
  const run = kind === 'ok' || kind === 'exitmid' ? tg.model : kind === 'badload' ? badModel() : withCheck(tg.model);
  return stepGraphOf(tg, run, { input: 'input', sampleDims: [1, 8, 8], classes: 3 }, { model: cnn(false), input: 'input', probs: TEACHER, temperature: 2 });
}

function badModel(): Model {
  const b = new GraphBuilder('bad');
  b.input('input', ['N', 1, 8, 8]);
  b.node('NoSuchOp', ['input'], {}, { output: 'y' });
  b.output('y');
  return b.model(17);
}

/** The training graph with the failing Gather of cnn(true) added as one more output. */
function withCheck(model: Model): Model {
  const c = cnn(true);
  const extra = c.graph.nodes.slice(-3);
  return {
    ...model,
    graph: {
      ...model.graph,
      nodes: [...model.graph.nodes, ...extra],
      initializers: new Map([...model.graph.initializers, ['two', c.graph.initializers.get('two')!]]),
      outputs: [...model.graph.outputs, { name: 'check' }],
    },
  };
}

/** One cycle; throws when something unexpected happened. */
async function cycle(kind: Kind, i: number): Promise<void> {
  // exitmid: steps long enough (about 0.1 s) to be inside onnxruntime when the process exits.
  const batch = kind === 'exitmid' ? 256 * B : B;
  const g = await stepGraph(kind, batch);
  const opts = { batch, replicas: R, threads: R, accumulate: 2 };
  if (kind === 'badload') {
    const ok = await createStepRunner(g, opts).then((run) => run.release().then(() => true), () => false);
    if (ok) throw new Error('a model onnxruntime cannot load was accepted');
    return;
  }
  const runner = await createStepRunner(g, opts);
  const r = rng(i + 1);
  for (let k = 0; k < runner.x.length; k++) runner.x[k] = r();
  for (let k = 0; k < batch; k++) runner.targets[k * 3 + (k % 3)] = 1;
  if (kind === 'exitmid') {
    const t0 = performance.now();
    await runner.step();
    const dt = performance.now() - t0;
    void runner.step();
    await new Promise((resolve) => setTimeout(resolve, r() * dt));
    process.exit(0); // a clean exit (code 0, no signal) counts as done

  }
  if (kind === 'ok') {
    for (let s = 0; s < 1 + (i % 2); s++) {
      const res = await runner.step();
      if (!Number.isFinite(res.loss)) throw new Error(`loss ${res.loss}`);
    }
    await runner.release();
    return;
  }
  // Replica 0's rows make its Gather fail; the other replicas run their steps normally.
  runner.x.fill(5, 0, runner.x.length / R);
  const failed = await runner.step().then(() => false, () => true);
  if (!failed) throw new Error('a failing step succeeded');
  if (kind === 'after') {
    const again = await runner.step().then(() => false, () => true);
    if (!again) throw new Error('a second failing step succeeded');
  }
  if (kind === 'noawait') void runner.release();
  else await runner.release();
}

async function child(cycles: number, first: number, fresh: boolean): Promise<void> {
  for (let i = first; i < first + cycles; i++) {
    const kind = fresh ? FRESH_KINDS[i % FRESH_KINDS.length]! : KINDS[i % KINDS.length]!;
    try {
      await cycle(kind, i);
      process.stdout.write(`done ${i}\n`);
    } catch (e) {
      process.stdout.write(`error ${i} ${kind}: ${(e as Error).message.split('\n')[0]}\n`);
    }
  }
}

interface Outcome {
  /** Cycles that finished (with or without an error). */
  done: number;
  errors: string[];
  abort?: string;
}

/** Runs `cycles` cycles starting at `first` in a child process (`fresh`: one cycle, kinds with exitmid). */
function runChild(cycles: number, first: number, fresh = false): Promise<Outcome> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [fileURLToPath(import.meta.url), '--child', String(cycles), '--first', String(first), '--replicas', String(R), ...(fresh ? ['--fresh-child'] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code, signal) => {
      const lines = out.split('\n').filter(Boolean);
      const clean = code === 0 && signal === null;
      const o: Outcome = { done: clean && fresh ? cycles : lines.length, errors: lines.filter((l) => l.startsWith('error')) };
      if (!clean || o.done < cycles) {
        const kinds = fresh ? FRESH_KINDS : KINDS;
        o.abort = `cycle ${first + o.done} (${kinds[(first + o.done) % kinds.length]}): ${signal ?? `exit ${code}`} ${err.trim().split('\n').slice(-2).join(' | ')}`;
      }
      resolve(o);
    });
  });
}

/** CPU seconds of this process and of its waited-for children (Linux /proc; this process only elsewhere). */
function cpuSeconds(): number {
  const own = process.cpuUsage();
  let children = 0;
  try {
    const f = readFileSync('/proc/self/stat', 'utf8');
    const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
    children = (Number(fields[13]) + Number(fields[14])) / 100; // cutime + cstime, in clock ticks of 1/100 s
  } catch {
    /* not Linux */
  }
  return (own.user + own.system) / 1e6 + children;
}

async function main(): Promise<void> {
  if (args.includes('--child')) return child(flag('--child', 1), flag('--first', 0), args.includes('--fresh-child'));
  const cycles = flag('--cycles', 500);
  const fresh = flag('--fresh', 0);
  const t0 = performance.now();
  const errors: string[] = [];
  const aborts: string[] = [];
  let done = 0;
  // In one process, restarted after an abort (the aborted cycle counts as done).
  while (done < cycles) {
    const o = await runChild(cycles - done, done);
    errors.push(...o.errors);
    done += o.done;
    if (o.abort) {
      aborts.push(o.abort);
      done++;
    }
  }
  for (let i = 0; i < fresh; i++) {
    const o = await runChild(1, i, true);
    errors.push(...o.errors);
    if (o.abort) aborts.push(`fresh ${o.abort}`);
  }
  const summary = { cycles: cycles + fresh, aborts: aborts.length, errors: errors.length, seconds: Number(((performance.now() - t0) / 1000).toFixed(1)), cpu: Number(cpuSeconds().toFixed(1)), firstErrors: errors.slice(0, 5), firstAborts: aborts.slice(0, 5) };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}

await main();
