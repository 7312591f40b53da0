/**
 * Depth pruning of a byte-level LM (../shared/models/tiny_llama_py.onnx): ranks the blocks (or sub-blocks) by
 * block influence and by loss increase on 32 calibration windows of 256 bytes at seeded random offsets of
 * train.bin (also written as an int64 .npy, [32, 256], for `--calib npy:`), drops the K least important and
 * measures bits per byte with the protocol of ../shared/README.md ("Evaluating the LM": 64 windows of 256 bytes
 * of val.bin at evenly spaced offsets, every position predicts the next byte).
 * Usage: node dist/bench/depth-lm.js [MODEL] [CORPUS_DIR] [--unit block|attention|mlp] [--k 1] [--npy OUT.npy]
 *        node dist/bench/depth-lm.js --eval PRUNED.onnx [CORPUS_DIR]   (bits per byte of a model, e.g. from shears prune)
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeModel } from '../src/onnx/codec.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/graph.js';
import type { Tensor } from '../src/ir/tensor.js';
import { cloneModel } from '../src/ir/clone.js';
import { rng } from '../src/random.js';
import { createSession } from '../src/runtime/session.js';
import { chooseUnits, removeBlocks, type BlockUnit } from '../src/prune/structured/depth.js';
import { blockInfluence, blockLossIncrease, magnitudeRanking, type DepthRanking } from '../src/prune/structured/influence.js';

const args = process.argv.slice(2);
const flag = (name: string, dflt: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args.splice(i, 2)[1]! : dflt;
};
const unit = flag('--unit', 'block') as BlockUnit;
const k = Number(flag('--k', '1'));
const npyOut = flag('--npy', '');
const evalOnly = flag('--eval', '');
const [modelPath = '../shared/models/tiny_llama_py.onnx', corpus = '../shared/data/pycorpus'] = args;
const T = 256;

function windows(bytes: Uint8Array, starts: number[]): { x: Tensor; y: Uint8Array[] } {
  const ids = new BigInt64Array(starts.length * T);
  const y: Uint8Array[] = [];
  starts.forEach((s, i) => {
    for (let t = 0; t < T; t++) ids[i * T + t] = BigInt(bytes[s + t]!);
    y.push(bytes.subarray(s + 1, s + T + 1));
  });
  return { x: { dtype: DataType.INT64, dims: [starts.length, T], data: ids }, y };
}

function npy(x: Tensor): Uint8Array {
  let header = `{'descr': '<i8', 'fortran_order': False, 'shape': (${x.dims.join(', ')}), }`;
  while ((10 + header.length + 1) % 64) header += ' ';
  header += '\n';
  const h = new Uint8Array(10 + header.length);
  h.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, header.length & 255, header.length >> 8]);
  h.set(new TextEncoder().encode(header), 10);
  const body = new Uint8Array((x.data as BigInt64Array).buffer);
  const out = new Uint8Array(h.length + body.length);
  out.set(h);
  out.set(body, h.length);
  return out;
}

async function bitsPerByte(model: Model, val: Uint8Array): Promise<number> {
  const n = 64, L = val.length;
  const starts = Array.from({ length: n }, (_, i) => Math.floor((i * (L - T - 1)) / (n - 1)));
  const sess = await createSession(model);
  let nll = 0, count = 0;
  try {
    for (let b = 0; b < n; b += 16) {
      const { x, y } = windows(val, starts.slice(b, b + 16));
      const out = Object.values(await sess.run({ input_ids: x }))[0]!;
      const logits = out.data as Float32Array, V = out.dims[2]!;
      for (let i = 0; i < y.length; i++) {
        for (let t = 0; t < T; t++) {
          const o = (i * T + t) * V;
          let m = -Infinity;
          for (let v = 0; v < V; v++) m = Math.max(m, logits[o + v]!);
          let z = 0;
          for (let v = 0; v < V; v++) z += Math.exp(logits[o + v]! - m);
          nll += Math.log(z) + m - logits[o + y[i]![t]!]!;
          count++;
        }
      }
    }
  } finally {
    await sess.release();
  }
  return nll / count / Math.LN2;
}

if (evalOnly) {
  const dir = args[0] ?? '../shared/data/pycorpus';
  console.log(`${evalOnly}: ${(await bitsPerByte(decodeModel(readFileSync(evalOnly)), readFileSync(join(dir, 'val.bin')))).toFixed(4)} bits/byte`);
  process.exit(0);
}
const model = decodeModel(readFileSync(modelPath));
const train = readFileSync(join(corpus, 'train.bin'));
const val = readFileSync(join(corpus, 'val.bin'));
const r = rng(0);
const calibStarts = Array.from({ length: 32 }, () => Math.floor(r() * (train.length - T - 1)));
const calib = windows(train, calibStarts).x;
if (npyOut) writeFileSync(npyOut, npy(calib));
const batches = [0, 8, 16, 24].map((b) => ({ input_ids: { dtype: DataType.INT64, dims: [8, T], data: (calib.data as BigInt64Array).subarray(b * T, (b + 8) * T) } as Tensor }));
const shapes = { input_ids: [1, T] };
const dense = await bitsPerByte(model, val);
console.log(`dense: ${dense.toFixed(4)} bits/byte`);
const rankings: DepthRanking[] = [
  await blockInfluence(model, batches, { unit, inputShapes: shapes }),
  await blockLossIncrease(model, batches, { unit, inputShapes: shapes }),
  magnitudeRanking(model, shapes, unit),
];
for (const rk of rankings) {
  const chosen = chooseUnits(model, k, shapes, { unit, scores: rk.scores });
  const m = cloneModel(model);
  removeBlocks(m, chosen.flatMap((u) => u.joins), shapes);
  const bpb = await bitsPerByte(m, val);
  console.log(`${rk.method}: scores ${rk.units.map((u) => `${u.name} ${u.score.toPrecision(3)}`).join(', ')}`);
  console.log(`  drop ${k} ${unit} by ${rk.method}: ${chosen.map((u) => u.name).join(', ')} -> ${bpb.toFixed(4)} bits/byte`);
}
