/**
 * Quantization figures (prints one JSON object; progress on stderr). Reads ../shared (models, full Fashion-MNIST).
 *
 *   node dist/bench/quant.js [--epochs N] [--pruned FILE] [--rounds R] [--skip NAME,...]
 *
 * - resnet20: float vs int8 (QDQ, uint8 activations, per-channel int8 weights) top-1 on the 10k test set for the
 *   three calibrators, and latency at batch 32 (float and int8 interleaved, `measureLatency` as `shears bench`);
 * - resnet20 pruned to 50% MACs (structured, widths multiples of 16), fine-tuned N epochs (default 1), then int8
 *   (first conv kept float unless --quantize-first):
 *   top-1 of the pruned float and pruned int8 models, latency at batch 32 (dense float / pruned float / pruned
 *   int8 interleaved); --pruned FILE reuses a pruned (and fine-tuned) model;
 * - resnet18 (random weights): float vs int8 latency at batch 1, fidelity on random inputs;
 * - other modes on resnet20: fp16, dynamic (size, latency, agreement).
 * Timings on shared 2-core machines vary: ratios are from interleaved rounds (median of per-round medians).
 */
import { existsSync } from 'node:fs';
import { openDataset } from '../src/data/spec.js';
import type { Model } from '../src/ir/graph.js';
import { encodeModel } from '../src/onnx/codec.js';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { evaluate } from '../src/metrics/evaluate.js';
import { measureLatency } from '../src/metrics/latency.js';
import { pruneStructured } from '../src/prune/structured/index.js';
import {
  convertFp16, datasetCalibration, optimizedOpTypes, quantizeDynamic, quantizeStatic, randomCalibration, type Calibrator,
} from '../src/quant/index.js';
import { loadArrays } from '../src/data/in-memory.js';
import { finetune } from '../src/train/trainer.js';

const SHARED = existsSync('../shared/models') ? '../shared' : '/work/shared';
const FMNIST = `${SHARED}/data/fashion-mnist`;
const PP = { scale: 1 / 255, mean: [0.286], std: [0.353] };
const args = process.argv.slice(2);
const arg = (k: string) => {
  const i = args.indexOf(k);
  return i >= 0 ? args[i + 1] : undefined;
};
const epochs = Number(arg('--epochs') ?? 1);
const rounds = Number(arg('--rounds') ?? 7);
const skip = new Set((arg('--skip') ?? '').split(',').filter(Boolean));
const log = (m: string) => process.stderr.write(`[bench/quant] ${m}\n`);

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** Interleaved latency: each round measures every model once (runs each); medians over rounds. */
async function interleaved(models: Record<string, Model>, batch: number, runs: number): Promise<Record<string, number>> {
  const per: Record<string, number[]> = Object.fromEntries(Object.keys(models).map((k) => [k, []]));
  for (let r = 0; r < rounds; r++) {
    for (const [k, m] of Object.entries(models)) {
      const res = await measureLatency(m, { batch, threads: 2, warmup: 3, runs });
      per[k]!.push(res.median);
    }
  }
  return Object.fromEntries(Object.entries(per).map(([k, v]) => [k, +median(v).toFixed(3)]));
}

const test = () => openDataset(FMNIST, PP);
const calib = (m: Model, n = 512) => datasetCalibration(m, openDataset(`${FMNIST}@train`, PP), n, 64);
const top1 = async (m: Model) => (await evaluate(m, test(), { threads: 2 })).accuracy!.top1;
const bytes = (m: Model) => encodeModel(m).byteLength;
const pct = (x: number) => +(100 * x).toFixed(2);

const out: Record<string, unknown> = { machine: { cpus: (await import('node:os')).cpus().length }, notes: 'latency in ms, medians of per-round medians (threads 2)' };

const dense = loadModel(`${SHARED}/models/fmnist_resnet20.onnx`);
if (!skip.has('resnet20')) {
  log('resnet20: float accuracy');
  const fTop1 = await top1(dense);
  const cal: Record<string, unknown> = {};
  let q8: Model | undefined;
  for (const c of ['minmax', 'percentile', 'entropy'] as Calibrator[]) {
    log(`resnet20: int8 ${c}`);
    const t0 = performance.now();
    const { model } = await quantizeStatic(dense, calib(dense), { calibrator: c });
    const secs = (performance.now() - t0) / 1000;
    cal[c] = { top1: pct(await top1(model)), quantizeSeconds: +secs.toFixed(2) };
    if (c === 'minmax') q8 = model;
  }
  log('resnet20: latency batch 32');
  const lat = await interleaved({ float: dense, int8: q8! }, 32, 20);
  out['resnet20'] = {
    float: { top1: pct(fTop1), bytes: bytes(dense) },
    int8: { bytes: bytes(q8!), calibrators: cal, onnxruntime: (await optimizedOpTypes(q8!)).opTypes },
    latencyBatch32: { ...lat, speedup: +(lat['float']! / lat['int8']!).toFixed(3) },
  };
}

if (!skip.has('pruned')) {
  let pruned: Model;
  const info: Record<string, unknown> = {};
  const given = arg('--pruned');
  if (given) {
    pruned = loadModel(given);
    info['from'] = given;
  } else {
    const roundTo = Number(arg('--round-to') ?? 16);
    log(`pruning resnet20 to 50% MACs (round-to ${roundTo})`);
    const r = pruneStructured(dense, { targetMacs: 0.5, roundTo });
    info['roundTo'] = roundTo;
    info['macsRatio'] = +r.report.macsRatio.toFixed(4);
    info['widths'] = r.report.layers.map((l) => l.after);
    info['oneShotTop1'] = pct(await top1(r.model));
    pruned = r.model;
    if (epochs > 0) {
      log(`fine-tuning ${epochs} epoch(s) on the 60k train set`);
      const train = await loadArrays(openDataset(`${FMNIST}@train`, PP).forInput(dense.graph.inputs[0]!.type!.shape!));
      const ft = await finetune(pruned, { train, epochs, batch: 128, lr: Number(arg('--lr') ?? 0.01), batchNorm: 'reinsert', threads: 2, progress: false });
      pruned = ft.model;
      info['finetune'] = { epochs, seconds: +ft.seconds.toFixed(1) };
    }
    saveModel(pruned, '/tmp/shears-bench-quant-pruned50.onnx');
    info['saved'] = '/tmp/shears-bench-quant-pruned50.onnx';
  }
  log('pruned: float accuracy, int8');
  const pf = await top1(pruned);
  // the first conv (1 input channel) stays float: its int8 kernel is slower than the float one here
  const firstConv = args.includes('--quantize-first') ? {} : { exclude: /^\/conv\/Conv$/ };
  info['int8Excluded'] = args.includes('--quantize-first') ? [] : ['/conv/Conv'];
  const { model: pq, report } = await quantizeStatic(pruned, calib(pruned), { calibrator: 'minmax', ...firstConv });
  const pi = await top1(pq);
  let entropyTop1: number | undefined;
  {
    const { model } = await quantizeStatic(pruned, calib(pruned), { calibrator: 'percentile', ...firstConv });
    entropyTop1 = await top1(model);
  }
  log('pruned: latency batch 32');
  const lat = await interleaved({ denseFloat: dense, prunedFloat: pruned, prunedInt8: pq }, 32, 20);
  out['resnet20_pruned50'] = {
    ...info,
    float: { top1: pct(pf), bytes: bytes(pruned) },
    int8: { top1: pct(pi), top1Percentile: pct(entropyTop1), bytes: bytes(pq), quantized: report.quantized },
    top1DropPoints: +(100 * (pf - pi)).toFixed(2),
    latencyBatch32: {
      ...lat,
      int8VsPrunedFloat: +(lat['prunedFloat']! / lat['prunedInt8']!).toFixed(3),
      int8VsDenseFloat: +(lat['denseFloat']! / lat['prunedInt8']!).toFixed(3),
    },
  };
}

if (!skip.has('resnet18')) {
  log('resnet18: int8 with random calibration');
  const r18 = loadModel(`${SHARED}/models/resnet18.onnx`);
  const { model: q18, report } = await quantizeStatic(r18, randomCalibration(r18, 8, 1, 1));
  // fidelity on other random inputs (random weights: no accuracy)
  const feeds = [...randomCalibration(r18, 16, 1, 99)()] as Record<string, import('../src/ir/tensor.js').Tensor>[];
  const { createSession } = await import('../src/runtime/session.js');
  const a = await createSession(r18, { threads: 2 }), b = await createSession(q18, { threads: 2 });
  let agree = 0, cos = 0;
  for (const f of feeds) {
    const ya = Object.values(await a.run(f))[0]!.data as Float32Array;
    const yb = Object.values(await b.run(f))[0]!.data as Float32Array;
    let dot = 0, na = 0, nb = 0, ia = 0, ib = 0;
    for (let i = 0; i < ya.length; i++) {
      dot += ya[i]! * yb[i]!; na += ya[i]! ** 2; nb += yb[i]! ** 2;
      if (ya[i]! > ya[ia]!) ia = i;
      if (yb[i]! > yb[ib]!) ib = i;
    }
    cos += dot / Math.sqrt(na * nb);
    if (ia === ib) agree++;
  }
  await a.release();
  await b.release();
  log('resnet18: latency batch 1');
  const lat = await interleaved({ float: r18, int8: q18 }, 1, 10);
  out['resnet18'] = {
    quantized: report.quantized,
    bytes: { float: bytes(r18), int8: bytes(q18) },
    fidelityRandomInputs: { samples: feeds.length, top1Agreement: agree / feeds.length, meanCosine: +(cos / feeds.length).toFixed(6) },
    onnxruntime: (await optimizedOpTypes(q18)).opTypes,
    latencyBatch1: { ...lat, speedup: +(lat['float']! / lat['int8']!).toFixed(3) },
  };
}

if (!skip.has('modes')) {
  log('resnet20: fp16 and dynamic');
  const h = convertFp16(dense).model;
  const d = quantizeDynamic(dense).model;
  const e = async (m: Model) => {
    const r = await evaluate(m, test(), { reference: dense, threads: 2, limit: 2000 });
    return { top1: pct(r.accuracy!.top1), agreement: r.fidelity!['logits']!.agreement, maxAbs: r.fidelity!['logits']!.maxAbs };
  };
  const lat = await interleaved({ float: dense, fp16: h, dynamic: d }, 32, 10);
  out['modes_resnet20'] = {
    fp16: { bytes: bytes(h), ...(await e(h)), note: 'x86 onnxruntime casts float16 back to float32 for its kernels: size, not speed' },
    dynamic: { bytes: bytes(d), ...(await e(d)), note: 'only the final Gemm is a matrix product; convolutions stay float' },
    latencyBatch32: lat,
  };
}

process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
