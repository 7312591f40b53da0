/**
 * Training benchmarks on fmnist_resnet20 + Fashion-MNIST (reads ../shared). Prints one JSON object.
 *   node dist/bench/train.js throughput [--steps N] [--threads T]
 *   node dist/bench/train.js scratch            1 epoch from scratch, README recipe (one-cycle 0.2, BN fresh)
 *   node dist/bench/train.js unstructured90     global L1 90% + 1 epoch fine-tune (masks enforced); --scope lamp|layer
 *   node dist/bench/train.js structured50       structured to 50% MACs (L2) + 2 epochs fine-tune [--round-to N]
 * Throughput times the trainer's step (data-parallel replicas in worker threads, Convs on onnxruntime's NCHWc
 * kernels) interleaved with one session in this thread, with and without NCHWc; --replicas R overrides the
 * trainer's default, --no-nchwc drops the NCHWc lowering.
 * Options: --epochs E, --limit N (train samples), --bn reinsert (default; BN statistics from the dense model)|none,
 *          --kd (teacher = dense model), --objective match-teacher (no labels: MSE to the dense model's logits),
 *          --lr X, --seed S, --replicas R
 */
import { cpus } from 'node:os';
import { existsSync } from 'node:fs';
import { loadModel } from '../src/onnx/io.js';
import { openDataset } from '../src/data/spec.js';
import { buildTrainingGraph } from '../src/autodiff/training.js';
import { cloneModel } from '../src/ir/clone.js';
import { probeTypes } from '../src/autodiff/shapes.js';
import { createSession } from '../src/runtime/session.js';
import { lowerNchwc } from '../src/autodiff/nchwc.js';
import { loadArrays, type ArrayData } from '../src/data/in-memory.js';
import { evaluateAccuracy, finetune, type FinetuneOptions } from '../src/train/trainer.js';
import { createStepRunner, defaultReplicas, stepGraphOf } from '../src/train/step-runner.js';
import { decomposeBatchNormForTraining, insertBatchNorm } from '../src/train/bn.js';
import type { Tensor } from '../src/ir/tensor.js';
import type { Model } from '../src/ir/graph.js';

const args = process.argv.slice(2);
const mode = args[0] ?? 'throughput';
const opt = (k: string, d?: string) => {
  const i = args.indexOf(`--${k}`);
  return i >= 0 ? args[i + 1] : d;
};
const flag = (k: string) => args.includes(`--${k}`);
const shared = ['../shared', '/work/shared'].find((p) => existsSync(`${p}/models/fmnist_resnet20.onnx`)) ?? '../shared';
const modelPath = existsSync(`${shared}/models/fmnist_resnet20.onnx`) ? `${shared}/models/fmnist_resnet20.onnx` : 'test/fixtures/models/fmnist_resnet20.onnx';
const threads = Number(opt('threads', String(cpus().length)));
// Spin-waiting threads inflate CPU time (and slow other processes on a shared machine): off unless --spin.
const spin = flag('spin');
const pp = { scale: 1 / 255, mean: [0.286], std: [0.353] };

async function data(): Promise<{ train: ArrayData; test: ArrayData }> {
  const limit = opt('limit') ? Number(opt('limit')) : undefined;
  const train = await loadArrays(openDataset(`idx:${shared}/data/fashion-mnist@train`, pp), limit);
  const test = await loadArrays(openDataset(`idx:${shared}/data/fashion-mnist@t10k`, pp));
  return { train, test };
}

function rss(): number {
  return Math.round(process.memoryUsage().rss / 2 ** 20);
}

/** A step runner for the training graph of `model` at batch B split over R replicas (as the trainer builds it). */
async function stepRunner(model: Model, B: number, R: number, nchwc: boolean) {
  const m = cloneModel(model);
  const shape = [B / R, 1, 28, 28];
  const pre = await probeTypes(m, { input: shape });
  const state = decomposeBatchNormForTraining(m, pre.shapes);
  const t0 = performance.now();
  const tg = await buildTrainingGraph(m, { batch: B / R, loss: { ce: {} }, state });
  const buildMs = performance.now() - t0;
  const low = nchwc ? await lowerNchwc(tg.model) : { model: tg.model, lowered: 0 };
  const runner = await createStepRunner(stepGraphOf(tg, low.model, { input: 'input', sampleDims: [1, 28, 28], classes: 10 }), { batch: B, replicas: R, threads, spin });
  tg.params.forEach((p, k) => runner.params[k]!.set(p.init.data as Float32Array));
  tg.state.forEach((s, k) => runner.state[k]!.set(s.init.data as Float32Array));
  return { runner, buildMs, nodes: tg.model.graph.nodes.length, lowered: low.lowered };
}

async function throughput(model: Model, bn: boolean) {
  const B = 128;
  const steps = Number(opt('steps', '20'));
  const R = opt('replicas') ? Number(opt('replicas')) : defaultReplicas(B, threads);
  let m = cloneModel(model);
  const x: Tensor = { dtype: 1, dims: [B, 1, 28, 28], data: Float32Array.from({ length: B * 784 }, () => Math.random() * 2 - 1) };
  if (bn) m = await insertBatchNorm(m, { input: x });
  // The trainer's step (R replicas, NCHWc Convs), timed interleaved with one session in this thread (R = 1) and,
  // unless --no-nchwc, with one plain session (no NCHWc lowering).
  const main = await stepRunner(m, B, R, !flag('no-nchwc'));
  const variants: [string, Awaited<ReturnType<typeof stepRunner>>][] = [['trainerStep', main]];
  if (R > 1) variants.push(['oneSession', await stepRunner(m, B, 1, !flag('no-nchwc'))]);
  if (!flag('no-nchwc')) variants.push(['oneSessionWithoutNchwc', await stepRunner(m, B, 1, false)]);
  for (const [, v] of variants) {
    v.runner.x.set(x.data as Float32Array);
    for (let i = 0; i < B; i++) v.runner.targets[i * 10 + (i % 10)] = 1;
    for (let i = 0; i < 3; i++) await v.runner.step();
  }
  const fwd = await createSession(model, { threads, spin });
  for (let i = 0; i < 3; i++) await fwd.run({ input: x });
  // Interleaved so all see the same machine load. Wall time, and process CPU time (user+sys over all threads).
  const cpuMs = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  const wall = variants.map(() => 0);
  const cpu = variants.map(() => 0);
  let tFwd = 0;
  const rssSeries: number[] = [];
  for (let i = 0; i < steps; i++) {
    for (let k = 0; k < variants.length; k++) {
      const t = performance.now();
      const c = cpuMs();
      await variants[k]![1].runner.step();
      wall[k]! += performance.now() - t;
      cpu[k]! += cpuMs() - c;
    }
    const t = performance.now();
    await fwd.run({ input: x });
    tFwd += performance.now() - t;
    if (i % 5 === 4) rssSeries.push(rss());
  }
  for (const [, v] of variants) await v.runner.release();
  await fwd.release();
  const stat = (k: number) => ({
    stepMs: +(wall[k]! / steps).toFixed(1),
    imagesPerSec: Math.round((B / (wall[k]! / steps)) * 1000),
    cpuMsPerStep: +(cpu[k]! / steps).toFixed(1),
  });
  const out: Record<string, unknown> = {
    batchNorm: bn,
    replicas: R,
    buildMs: Math.round(main.buildMs),
    trainingGraphNodes: main.nodes,
    nchwcConvs: main.lowered,
    ...stat(0),
    forwardMs: +(tFwd / steps).toFixed(1),
    rssMiB: rssSeries,
  };
  variants.slice(1).forEach(([name], k) => (out[name] = stat(k + 1)));
  return out;
}

async function main() {
  const model = await loadModel(modelPath);
  const out: Record<string, unknown> = { mode, threads, spin, cpus: cpus().length, model: modelPath };
  const ftBase = (): Partial<FinetuneOptions> => ({ threads, batch: 128, seed: Number(opt('seed', '0')), progress: !flag('quiet'), spin, nchwc: !flag('no-nchwc'), ...(opt('replicas') ? { replicas: Number(opt('replicas')) } : {}) });
  if (mode === 'throughput') {
    out['folded'] = await throughput(model, false);
    out['withBatchNorm'] = await throughput(model, true);
    out['pytorch'] = { imagesPerSec: 612, stepMs: 209, forwardMs: 46, note: 'reference from ../shared/README.md (BN in train mode), not measured in this run' };
  } else if (mode === 'scratch') {
    const { train, test } = await data();
    const r = await finetune(model, {
      ...ftBase(), train, val: test, epochs: Number(opt('epochs', '1')), reinit: true, batchNorm: 'fresh',
      lr: Number(opt('lr', '0.2')), schedule: { kind: 'onecycle' },
      optimizer: { kind: 'sgd', momentum: 0.9, nesterov: true, weightDecay: 5e-4 },
    });
    out['result'] = { top1: r.history.at(-1)?.valAcc, seconds: +r.seconds.toFixed(1), history: r.history };
    out['exportedTop1'] = await evaluateAccuracy(r.model, test, { threads });
    out['pytorch'] = { top1: 0.8937, seconds: 85 };
  } else if (mode === 'unstructured90') {
    const { pruneUnstructured } = await import('../src/sparsity/unstructured.js');
    const { train, test } = await data();
    const pruned = cloneModel(model);
    const scope = opt('scope', 'global') as 'global' | 'lamp' | 'layer';
    out['scope'] = scope;
    pruneUnstructured(pruned, { sparsity: 0.9, scope, method: 'l1' });
    const { applyMasks } = await import('../src/sparsity/masks.js');
    applyMasks(pruned);
    const oneShot = await evaluateAccuracy(pruned, test, { threads });
    const r = await finetune(pruned, {
      ...ftBase(), train, val: test, epochs: Number(opt('epochs', '1')), lr: Number(opt('lr', '0.01')),
      batchNorm: (opt('bn', 'reinsert') as 'none' | 'reinsert'), bnReference: model, ...(flag('kd') ? { teacher: model } : {}),
    });
    const { getMasks } = await import('../src/sparsity/masks.js');
    let violations = 0;
    for (const [k, mask] of getMasks(r.model)) {
      const d = r.model.graph.initializers.get(k)!.data as Float32Array;
      for (let i = 0; i < mask.length; i++) if (!mask[i] && d[i] !== 0) violations++;
    }
    out['result'] = { oneShotTop1: oneShot, afterBnReinsertTop1: r.initialValAcc, top1: await evaluateAccuracy(r.model, test, { threads }), seconds: +r.seconds.toFixed(1), maskViolations: violations, history: r.history };
    out['pytorch'] = { oneShotTop1: 0.1109, top1: 0.9248 };
  } else if (mode === 'structured50') {
    const { pruneStructured } = await import('../src/prune/structured/index.js');
    const { train, test } = await data();
    const t0 = performance.now();
    const pr = pruneStructured(model, {
      targetMacs: Number(opt('macs', '0.5')), importance: 'l2' as never, inputShapes: { input: [1, 1, 28, 28] },
      roundTo: Number(opt('round-to', '1')),
    });
    const pruneSec = (performance.now() - t0) / 1000;
    const oneShot = await evaluateAccuracy(pr.model, test, { threads });
    const r = await finetune(pr.model, {
      ...ftBase(), train, val: test, epochs: Number(opt('epochs', '2')), lr: Number(opt('lr', '0.01')),
      batchNorm: (opt('bn', 'reinsert') as 'none' | 'reinsert'), bnReference: model,
      ...(flag('kd') || opt('objective') === 'match-teacher' ? { teacher: model } : {}),
      ...(opt('objective') === 'match-teacher' ? { objective: 'match-teacher' as const } : {}),
    });
    out['result'] = { macsRatio: pr.report.macsRatio, pruneSeconds: +pruneSec.toFixed(1), oneShotTop1: oneShot, afterBnReinsertTop1: r.initialValAcc, top1: await evaluateAccuracy(r.model, test, { threads }), finetuneSeconds: +r.seconds.toFixed(1), history: r.history };
    out['pytorch'] = { torchPruning: { macsRatio: 0.476, oneShotTop1: 0.2842, top1: 0.9317, seconds: 127 } };
  } else throw new Error(`unknown mode ${mode}`);
  process.stdout.write(`${JSON.stringify(out, null, 1)}\n`);
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});
