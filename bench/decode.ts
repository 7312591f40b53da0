/**
 * Decoding/encoding speed of the ONNX codec. Prints JSON.
 * A synthetic 100 MB model (25 Gemm layers of 1024x1024 float weights) plus every model in ../shared/models
 * when that folder exists. Usage: node dist/bench/decode.js [sharedModelsDir]
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GraphBuilder } from '../src/ir/builder.js';
import { floatTensor } from '../src/ir/tensor.js';
import { encodeModel } from '../src/onnx/codec.js';
import { parseModel } from '../src/onnx/io.js';

function best(fn: () => void, runs = 5): number {
  let b = Infinity;
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    fn();
    b = Math.min(b, performance.now() - t);
  }
  return b;
}

function synthetic(layers: number, width: number): Uint8Array {
  const b = new GraphBuilder('synthetic');
  let x = b.input('x', ['N', width]);
  for (let i = 0; i < layers; i++) {
    const w = b.init(`w${i}`, floatTensor([width, width], new Float32Array(width * width).map((_, k) => Math.sin(k + i))));
    const bias = b.init(`b${i}`, floatTensor([width]));
    x = b.node('Relu', [b.node('Gemm', [x, w, bias], { transB: 1 })]);
  }
  b.output(x);
  return encodeModel(b.model());
}

const results: Record<string, unknown>[] = [];
const big = synthetic(25, 1024);
results.push({
  model: 'synthetic-25x1024x1024',
  megabytes: +(big.byteLength / 1e6).toFixed(1),
  decodeMs: +best(() => parseModel(big)).toFixed(1),
  encodeMs: +best(() => encodeModel(parseModel(big)), 3).toFixed(1),
});
const dir = process.argv[2] ?? '../shared/models';
if (existsSync(dir)) {
  for (const f of readdirSync(dir).filter((f) => f.endsWith('.onnx')).sort()) {
    const bytes = new Uint8Array(readFileSync(join(dir, f)));
    const model = parseModel(bytes);
    results.push({
      model: f,
      megabytes: +(bytes.byteLength / 1e6).toFixed(1),
      decodeMs: +best(() => parseModel(bytes)).toFixed(1),
      encodeMs: +best(() => encodeModel(model), 3).toFixed(1),
    });
  }
}
process.stdout.write(`${JSON.stringify({ bench: 'codec', node: process.version, results }, null, 1)}\n`);
