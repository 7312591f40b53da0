/**
 * One-shot top-1 of fmnist_resnet20 on the Fashion-MNIST test set after mask pruning, no fine-tuning:
 * global L1, LAMP and uniform per-layer at 50/70/90%, and 2:4. Compare with the PyTorch reference figures in
 * ../shared/README.md (torch.nn.utils.prune global L1: 93.25 / 67.40 / 11.09; 2:4: 65.39).
 * Usage: node dist/bench/sparsity-accuracy.js [model] [dataDir]
 */
import { decodeModel, encodeModel } from '../src/onnx/codec.js';
import { loadModel } from '../src/onnx/io.js';
import type { Model } from '../src/ir/graph.js';
import { floatTensor } from '../src/ir/tensor.js';
import { createSession } from '../src/runtime/session.js';
import { readIdx } from '../src/data/idx.js';
import { pruneUnstructured, type UnstructuredOptions } from '../src/sparsity/unstructured.js';
import { modelSparsity } from '../src/sparsity/stats.js';

const modelPath = process.argv[2] ?? '../shared/models/fmnist_resnet20.onnx';
const dataDir = process.argv[3] ?? '../shared/data/fashion-mnist';
const images = readIdx(`${dataDir}/t10k-images-idx3-ubyte.gz`);
const labels = readIdx(`${dataDir}/t10k-labels-idx1-ubyte.gz`);
const n = images.dims[0]!;
const x = new Float32Array(n * 784);
for (let i = 0; i < x.length; i++) x[i] = (images.data[i]! / 255 - 0.286) / 0.353;

async function top1(m: Model): Promise<number> {
  const s = await createSession(m, { threads: 2 });
  const B = 500;
  let correct = 0;
  for (let b = 0; b < n; b += B) {
    const out = (await s.run({ input: floatTensor([B, 1, 28, 28], x.subarray(b * 784, (b + B) * 784)) })).logits!.data as Float32Array;
    for (let i = 0; i < B; i++) {
      let best = 0;
      for (let c = 1; c < 10; c++) if (out[i * 10 + c]! > out[i * 10 + best]!) best = c;
      if (best === labels.data[b + i]) correct++;
    }
  }
  await s.release();
  return correct / n;
}

const dense = loadModel(modelPath);
const rows: Record<string, unknown>[] = [{ label: 'dense', top1: await top1(dense) }];
const cases: [string, UnstructuredOptions][] = [];
for (const s of [0.5, 0.7, 0.9]) {
  cases.push([`global L1 ${s * 100}%`, { sparsity: s }]);
  cases.push([`LAMP ${s * 100}%`, { sparsity: s, scope: 'lamp' }]);
  cases.push([`per-layer L1 ${s * 100}%`, { sparsity: s, scope: 'layer' }]);
}
cases.push(['2:4 L1', { pattern: { n: 2, m: 4 } }]);
for (const [label, opts] of cases) {
  const m = decodeModel(encodeModel(dense));
  pruneUnstructured(m, opts);
  const st = modelSparsity(m);
  const worst = Math.max(...st.layers.map((l) => l.sparsity));
  rows.push({ label, layerSparsity: +st.layerSparsity.toFixed(4), maxLayerSparsity: +worst.toFixed(4), top1: await top1(m) });
}
console.log(JSON.stringify({ model: modelPath, samples: n, rows }, null, 2));
