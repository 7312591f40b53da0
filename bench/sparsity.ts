/**
 * Storage effect of unstructured sparsity on fmnist_resnet20: file and gzip sizes at 50/70/90% global L1
 * (plus LAMP and 2:4), with the masks stored in the file and with them baked in (--no-masks), and onnxruntime
 * latency dense vs 90% sparse (no sparse kernels: expect no speed-up).
 * Usage: node dist/bench/sparsity.js [model=../shared/models/fmnist_resnet20.onnx]
 */
import { existsSync } from 'node:fs';
import { encodeModel, decodeModel } from '../src/onnx/codec.js';
import { loadModel } from '../src/onnx/io.js';
import type { Model } from '../src/ir/graph.js';
import { floatTensor } from '../src/ir/tensor.js';
import { createSession } from '../src/runtime/session.js';
import { removeMasks } from '../src/sparsity/masks.js';
import { modelSizes, modelSparsity } from '../src/sparsity/stats.js';
import { pruneUnstructured, type UnstructuredOptions } from '../src/sparsity/unstructured.js';

const path = process.argv[2] ?? (existsSync('../shared/models/fmnist_resnet20.onnx') ? '../shared/models/fmnist_resnet20.onnx' : 'test/fixtures/models/fmnist_resnet20.onnx');
const dense = loadModel(path);
const denseSize = modelSizes(encodeModel(dense));

function run(label: string, opts: UnstructuredOptions) {
  const m = decodeModel(encodeModel(dense));
  const t0 = performance.now();
  const r = pruneUnstructured(m, opts);
  const pruneMs = performance.now() - t0;
  const withMasks = modelSizes(m);
  removeMasks(m);
  const baked = modelSizes(m);
  const s = modelSparsity(m);
  return {
    label,
    pruneMs: Math.round(pruneMs),
    layerSparsity: +s.layerSparsity.toFixed(4),
    allParamSparsity: +s.sparsity.toFixed(4),
    skipped: r.skipped.map((x) => x.name),
    withMasks: { ...withMasks, gzipRatio: +(withMasks.gzipBytes / denseSize.gzipBytes).toFixed(3) },
    baked: { ...baked, gzipRatio: +(baked.gzipBytes / denseSize.gzipBytes).toFixed(3) },
    model: m,
  };
}

const rows = [
  run('global L1 50%', { sparsity: 0.5 }),
  run('global L1 70%', { sparsity: 0.7 }),
  run('global L1 90%', { sparsity: 0.9 }),
  run('LAMP 90%', { sparsity: 0.9, scope: 'lamp' }),
  run('2:4 L1', { pattern: { n: 2, m: 4 } }),
];

/** Median latency of dense vs sparse, runs interleaved (A B A B ...) so machine load hits both alike. */
async function latencyPair(a: Model, b: Model, batch: number, reps: number): Promise<{ dense: number; sparse: number }> {
  const sa = await createSession(a, { threads: 1 });
  const sb = await createSession(b, { threads: 1 });
  const x = floatTensor([batch, 1, 28, 28], Array.from({ length: batch * 784 }, (_, i) => Math.sin(i)));
  const ta: number[] = [];
  const tb: number[] = [];
  for (let i = 0; i < reps + 3; i++) {
    for (const [s, t] of [[sa, ta], [sb, tb]] as const) {
      const t0 = performance.now();
      await s.run({ input: x });
      if (i >= 3) t.push(performance.now() - t0);
    }
  }
  await sa.release();
  await sb.release();
  const med = (t: number[]) => +t.sort((p, q) => p - q)[Math.floor(t.length / 2)]!.toFixed(2);
  return { dense: med(ta), sparse: med(tb) };
}

const lat: Record<string, { dense: number; sparse: number }> = {};
if (dense.graph.inputs.some((i) => i.name === 'input')) {
  lat['global90_b1_1thread'] = await latencyPair(dense, rows[2]!.model, 1, 200);
  lat['global90_b64_1thread'] = await latencyPair(dense, rows[2]!.model, 64, 30);
}

console.log(JSON.stringify({
  model: path,
  dense: denseSize,
  rows: rows.map(({ model: _m, ...r }) => r),
  medianLatencyMs: lat,
  note: 'unstructured sparsity saves storage (gzip), not CPU time: onnxruntime densifies and has no sparse kernels',
}, null, 2));
