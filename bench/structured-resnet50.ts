/**
 * Speed of analyse + plan + prune + save on a torchvision-resnet50-shaped model (built here with GraphBuilder
 * like a PyTorch export: BN folded into Conv, random weights, 25.6 M params, 4.1 GMACs), at --target-macs 0.5.
 * Torch-Pruning needs 6.1 s for the same on this kind of machine (../shared/README.md). Prints JSON.
 * Usage: node dist/bench/structured-resnet50.js [--repeat N]
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphBuilder } from '../src/ir/builder.js';
import { floatTensor, numel } from '../src/ir/tensor.js';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { pruneStructured } from '../src/prune/structured/index.js';
import { DEFAULT_ROUND_TO } from '../src/pipeline/steps.js';

let seed = 7;
function weights(dims: number[]): ReturnType<typeof floatTensor> {
  const n = numel(dims);
  const fan = numel(dims.slice(1));
  const s = Math.sqrt(2 / fan);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    d[i] = (seed / 0x7fffffff - 0.5) * 2 * s;
  }
  return floatTensor(dims, d);
}

function resnet50(): ReturnType<GraphBuilder['model']> {
  const b = new GraphBuilder('resnet50');
  let x = b.input('input', ['N', 3, 224, 224]);
  const conv = (inp: string, cin: number, cout: number, k: number, stride: number, name: string) =>
    b.node('Conv', [inp, b.init(`${name}.weight`, weights([cout, cin, k, k])), b.init(`${name}.bias`, weights([cout]))],
      { kernel_shape: [k, k], pads: [Math.floor(k / 2), Math.floor(k / 2), Math.floor(k / 2), Math.floor(k / 2)], strides: [stride, stride] }, { name: `/${name}/Conv` });
  x = b.node('Relu', [conv(x, 3, 64, 7, 2, 'conv1')]);
  x = b.node('MaxPool', [x], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [2, 2] });
  let cin = 64;
  [[3, 64], [4, 128], [6, 256], [3, 512]].forEach(([blocks, width], li) => {
    for (let i = 0; i < blocks!; i++) {
      const stride = i === 0 && li > 0 ? 2 : 1;
      const name = `layer${li + 1}.${i}`;
      const cout = width! * 4;
      let y = b.node('Relu', [conv(x, cin, width!, 1, 1, `${name}.conv1`)]);
      y = b.node('Relu', [conv(y, width!, width!, 3, stride, `${name}.conv2`)]);
      y = conv(y, width!, cout, 1, 1, `${name}.conv3`);
      const skip = i === 0 ? conv(x, cin, cout, 1, stride, `${name}.downsample.0`) : x;
      x = b.node('Relu', [b.node('Add', [y, skip])]);
      cin = cout;
    }
  });
  x = b.node('Flatten', [b.node('GlobalAveragePool', [x])], { axis: 1 });
  const y = b.node('Gemm', [x, b.init('fc.weight', weights([1000, 2048])), b.init('fc.bias', weights([1000]))], { transB: 1 }, { output: 'output' });
  b.output(y, ['N', 1000]);
  return b.model(17);
}

const args = process.argv.slice(2);
const repeat = Number(args[args.indexOf('--repeat') + 1] ?? 3) || 3;
const dir = mkdtempSync(join(tmpdir(), 'shears-r50-'));
const src = join(dir, 'resnet50.onnx');
saveModel(resnet50(), src);
const runs: unknown[] = [];
for (let r = 0; r < repeat; r++) {
  const t0 = performance.now();
  const model = loadModel(src);
  const t1 = performance.now();
  const res = pruneStructured(model, { targetMacs: 0.5, roundTo: DEFAULT_ROUND_TO });
  const t2 = performance.now();
  saveModel(res.model, join(dir, 'pruned.onnx'));
  const t3 = performance.now();
  runs.push({
    loadMs: Math.round(t1 - t0),
    analysePlanPruneMs: Math.round(t2 - t1),
    saveMs: Math.round(t3 - t2),
    analysePlanPruneSaveMs: Math.round(t3 - t1),
    stagesMs: res.report.timings,
    macsRatio: +res.report.macsRatio.toFixed(4),
    params: [res.report.before.params, res.report.after.params],
    macs: [res.report.before.macs, res.report.after.macs],
  });
}
process.stdout.write(`${JSON.stringify({ model: 'resnet50-shaped (GraphBuilder)', roundTo: DEFAULT_ROUND_TO, runs }, null, 1)}\n`);
