/**
 * Layer-streamed Wanda / SparseGPT on Llama-shaped models larger than memory (bench/llama-shaped.ts builds them).
 *
 *   node dist/bench/llm-scale.js --model /work/big/llama22.onnx --method wanda [--sparsity 0.5] [--windows 32]
 *        [--context 128] [--out /work/big/pruned.onnx] [--compare]
 *
 * Runs `shears prune MODEL -o OUT --sparsity S --method wanda|sparsegpt --calib tokens:RANDOM.npy,context=T --calib-size W
 * --json` under /usr/bin/time (wall time, peak RSS), then checks the output: every pruned matrix has exactly
 * round(S x size) zeros (read tensor by tensor), onnxruntime loads it with its external data and gives finite
 * logits, and the perplexity on random tokens (4 windows). With --compare (for a cut small enough for memory)
 * the same method also runs held fully in memory (pruneLayerwise without an output, the model read eagerly) and
 * the weights are compared bit for bit, perplexities side by side. Prints one JSON object (with the CPU model
 * and the load average before and after).
 */
import { spawnSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { lazyStats, releaseTensor } from '../src/ir/lazy.js';
import type { Model } from '../src/ir/graph.js';
import { int64Tensor } from '../src/ir/tensor.js';
import { loadModel } from '../src/onnx/io.js';
import { openTokens, bindTokens } from '../src/data/tokens.js';
import { pruneLayerwise } from '../src/prune/stream.js';
import { createSession } from '../src/runtime/session.js';
import { rng } from '../src/random.js';

const args = process.argv.slice(2);
const flag = (name: string, dflt?: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1]! : dflt;
};
const modelPath = resolve(flag('--model', '/work/big/llama22.onnx')!);
const method = flag('--method', 'wanda') as 'wanda' | 'sparsegpt';
const sparsity = Number(flag('--sparsity', '0.5'));
const windows = Number(flag('--windows', '32'));
const context = Number(flag('--context', '128'));
const out = resolve(flag('--out', modelPath.replace(/\.onnx$/, `.${method}.onnx`))!);
const vocab = 32000;

/** Random token ids as an int32 .npy (seeded): calibration for random-weight models. */
function writeTokens(path: string, n: number, seed: number): void {
  const r = rng(seed);
  const header = `{'descr': '<i4', 'fortran_order': False, 'shape': (${n},), }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  const h = `${header}${' '.repeat(pad)}\n`;
  const buf = Buffer.alloc(10 + h.length + 4 * n);
  buf.write('\x93NUMPY', 0, 'latin1');
  buf[6] = 1;
  buf[7] = 0;
  buf.writeUInt16LE(h.length, 8);
  buf.write(h, 10, 'latin1');
  for (let i = 0; i < n; i++) buf.writeInt32LE(Math.floor(r() * vocab), 10 + h.length + 4 * i);
  writeFileSync(path, buf);
}

/** Per pruned MatMul weight: zeros and size (tensors read one at a time and released). */
function zeroCounts(m: Model, names: Set<string>): { name: string; zeros: number; size: number }[] {
  const rows: { name: string; zeros: number; size: number }[] = [];
  for (const [name, t] of m.graph.initializers) {
    if (!names.has(name)) continue;
    const d = t.data as Float32Array;
    let z = 0;
    for (let i = 0; i < d.length; i++) if (d[i] === 0) z++;
    rows.push({ name, zeros: z, size: d.length });
    releaseTensor(t);
  }
  return rows;
}

/** Perplexity (nats per token, exp) of the model on 4 windows of random tokens, batch 1 at a time. */
async function perplexity(path: string): Promise<{ ppl: number; finite: boolean; seconds: number }> {
  const t0 = performance.now();
  const runner = await createSession(path);
  const r = rng(12345);
  let nll = 0;
  let count = 0;
  let finite = true;
  for (let w = 0; w < 4; w++) {
    const ids = Array.from({ length: context + 1 }, () => Math.floor(r() * vocab));
    const res = await runner.run({ input_ids: int64Tensor([1, context], ids.slice(0, context)) });
    const logits = res['logits']!.data as Float32Array;
    for (let t = 0; t < context; t++) {
      const row = logits.subarray(t * vocab, (t + 1) * vocab);
      let mx = -Infinity;
      for (const v of row) {
        if (!Number.isFinite(v)) finite = false;
        if (v > mx) mx = v;
      }
      let s = 0;
      for (const v of row) s += Math.exp(v - mx);
      nll += Math.log(s) + mx - row[ids[t + 1]!]!;
      count++;
    }
  }
  await runner.release();
  return { ppl: Math.exp(nll / count), finite, seconds: (performance.now() - t0) / 1000 };
}

const tokens = '/tmp/llm-scale-tokens.npy';
writeTokens(tokens, 200_000, 7);
const calib = `tokens:${tokens},context=${context}`;
const result: Record<string, unknown> = { cpu: cpus()[0]?.model, cores: cpus().length, loadBefore: loadavg().map((x) => +x.toFixed(2)), model: modelPath, method, sparsity, windows, context };
const cli = resolve(new URL('../src/cli/main.js', import.meta.url).pathname);
const run = spawnSync('/usr/bin/time', ['-f', 'TIME %M KB %e s %U %S', process.execPath, cli, 'prune', modelPath, '-o', out, '--sparsity', String(sparsity), '--method', method, '--calib', calib, '--calib-size', String(windows), '--json'], { encoding: 'utf8', maxBuffer: 1 << 28 });
const timeLine = /TIME (\d+) KB ([\d.]+) s ([\d.]+) ([\d.]+)/.exec(run.stderr);
if (run.status !== 0 || !timeLine) throw new Error(`shears prune failed (${run.status}): ${run.stderr.slice(-2000)}`);
result['wallSeconds'] = Number(timeLine[2]);
result['peakRssMiB'] = Math.round(Number(timeLine[1]) / 1024);
// CPU time (user + system, all threads): what the run costs on a machine shared with other jobs
result['cpuSeconds'] = +(Number(timeLine[3]) + Number(timeLine[4])).toFixed(1);
const timeOut = run.stdout;
const report = JSON.parse(timeOut) as { seconds: number; steps: number; statsSeconds: number; solveSeconds: number; layers: { node: string; k: number; rows: number; seconds: number }[]; skipped: unknown[]; peakWeightBytes: number };
result['loadAfter'] = loadavg().map((x) => +x.toFixed(2));
result['seconds'] = +report.seconds.toFixed(1);
result['peakLazyWeightMiB'] = Math.round(report.peakWeightBytes / 2 ** 20);
// onnxruntime steps (forward passes and statistics; layers reading the same input share one) vs the solves
// (mask choice, SparseGPT's linear algebra, layout moves and writes)
result['split'] = { layers: report.layers.length, steps: report.steps, onnxruntimeStatsSeconds: +report.statsSeconds.toFixed(1), solveAndWriteSeconds: +report.solveSeconds.toFixed(1) };
const byShape = new Map<string, { n: number; total: number }>();
for (const l of report.layers) {
  const key = `${l.node.replace(/.*\/(\w+_proj)\/.*/, '$1')} [${l.k}x${l.rows}]`;
  const e = byShape.get(key) ?? { n: 0, total: 0 };
  e.n++;
  e.total += l.seconds;
  byShape.set(key, e);
}
// per layer: its step (when it ran one) and its solve
result['perLayerKind'] = Object.fromEntries([...byShape].map(([k, e]) => [k, { count: e.n, secondsEach: +(e.total / e.n).toFixed(2) }]));
// the output: exact zeros per pruned matrix, loads in onnxruntime, perplexity
const pruned = loadModel(out);
const names = new Set(report.layers.map((l) => pruned.graph.nodes.find((n) => n.name === l.node)!.inputs[1]!));
const counts = zeroCounts(pruned, names);
result['prunedMatrices'] = counts.length;
result['everyMatrixExact'] = counts.every((c) => c.zeros === Math.round(sparsity * c.size));
result['zeroFraction'] = counts.reduce((a, c) => a + c.zeros, 0) / counts.reduce((a, c) => a + c.size, 0);
result['checkLazyPeakMiB'] = Math.round(lazyStats().peak / 2 ** 20);
result['streamed'] = await perplexity(out);
if (args.includes('--compare')) {
  // the same method held fully in memory (eager load, no output writer), weights compared bit for bit
  const t0 = performance.now();
  const dense = loadModel(modelPath, { lazy: false });
  const ds = bindTokens(openTokens(tokens, { context }), dense).sample(windows, 0);
  const mem = await pruneLayerwise(dense, ds, { method, sparsity });
  let differing = 0;
  for (const name of names) {
    const a = mem.model.graph.initializers.get(name)!.data as Float32Array;
    const b = pruned.graph.initializers.get(name)!.data as Float32Array;
    const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
    const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
    for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) differing++;
    releaseTensor(pruned.graph.initializers.get(name)!);
  }
  const memPath = out.replace(/\.onnx$/, '.inmemory.onnx');
  const { saveModel } = await import('../src/onnx/io.js');
  saveModel(mem.model, memPath, { externalData: true });
  const memSeconds = +((performance.now() - t0) / 1000).toFixed(1);
  result['inMemory'] = { pruneSeconds: memSeconds, weightsDiffering: differing, ...(await perplexity(memPath)) };
}
process.stdout.write(`${JSON.stringify(result, null, 1)}\n`);
