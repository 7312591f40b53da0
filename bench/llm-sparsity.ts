/**
 * Language-model sparsity on ../shared/models/tiny_llama_py.onnx: magnitude, Wanda and SparseGPT at 50% and 2:4,
 * SparseGPT with the least-squares fit first, OWL 70% against uniform Wanda 70%; every Linear except the LM head
 * (MatMul_1179), as the PyTorch references in ../shared/README.md. Each is one `shears prune` command (Wanda and
 * SparseGPT: 32 calibration windows of 256 bytes of train.bin at seeded random offsets), timed whole (wall and CPU seconds of
 * the process, from /usr/bin/time where present), then scored with the README protocol (64 windows of 256 bytes
 * of val.bin, evenly spaced; bits per byte). Prints one JSON object with the CPU model and the load average
 * before and after each run: other jobs on a shared machine stretch the wall times (compare CPU seconds).
 * Usage: node dist/bench/llm-sparsity.js [MODEL] [CORPUS_DIR] [--only NAME,NAME]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDataset } from '../src/data/spec.js';
import { evaluatePerplexity } from '../src/metrics/perplexity.js';
import { loadModel } from '../src/onnx/io.js';

const args = process.argv.slice(2);
const oi = args.indexOf('--only');
const only = oi >= 0 ? new Set(args.splice(oi, 2)[1]!.split(',')) : undefined;
const [modelPath = '../shared/models/tiny_llama_py.onnx', corpus = '../shared/data/pycorpus'] = args;
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const calib = ['--calib', `tokens:${join(corpus, 'train.bin')},context=256`, '--calib-size', '32'];
const RUNS: { name: string; args: string[]; pytorch?: number }[] = [
  { name: 'magnitude 50%', args: ['--sparsity', '0.5', '--per-layer', '--method', 'magnitude'], pytorch: 2.2443 },
  { name: 'magnitude 2:4', args: ['--pattern', '2:4', '--method', 'magnitude'], pytorch: 2.3038 },
  { name: 'wanda 50%', args: ['--sparsity', '0.5', '--method', 'wanda'], pytorch: 2.2494 },
  { name: 'wanda 2:4', args: ['--pattern', '2:4', '--method', 'wanda'], pytorch: 2.3024 },
  { name: 'sparsegpt 50%', args: ['--sparsity', '0.5', '--method', 'sparsegpt'], pytorch: 2.2117 },
  { name: 'sparsegpt 2:4', args: ['--pattern', '2:4', '--method', 'sparsegpt'], pytorch: 2.2276 },
  { name: 'sparsegpt 50% fit-first', args: ['--sparsity', '0.5', '--method', 'sparsegpt', '--fit-first'] },
  { name: 'sparsegpt 2:4 fit-first', args: ['--pattern', '2:4', '--method', 'sparsegpt', '--fit-first'] },
  { name: 'wanda 70%', args: ['--sparsity', '0.7', '--method', 'wanda'] },
  { name: 'wanda 70% OWL', args: ['--sparsity', '0.7', '--method', 'wanda', '--owl'] },
];

const val = () => openDataset(`tokens:${join(corpus, 'val.bin')},context=256`);
const load = () => loadavg().map((x) => Number(x.toFixed(2)));

async function bitsPerByte(path: string): Promise<number> {
  const r = await evaluatePerplexity(loadModel(path), val(), { limit: 64 });
  return Number(r.perplexity.bitsPerToken.toFixed(4));
}

const dir = mkdtempSync(join(tmpdir(), 'shears-llm-sparsity-'));
const time = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;
const out: Record<string, unknown> = { cpu: cpus()[0]?.model, cores: cpus().length, model: modelPath, loadBefore: load() };
out['dense'] = { bitsPerByte: await bitsPerByte(modelPath), readme: 2.2034 };
const results: Record<string, unknown>[] = [];
for (const run of RUNS) {
  if (only && !only.has(run.name)) continue;
  const output = join(dir, `${run.name.replace(/[^\w]+/g, '_')}.onnx`);
  // every Linear but the LM head; calibration data for the methods that use it
  const common = ['--exclude', 'MatMul_1179', ...(run.args.some((a) => a === 'wanda' || a === 'sparsegpt') ? calib : [])];
  const cmd = [CLI, 'prune', modelPath, '-o', output, ...common, ...run.args];
  const loadAt = load();
  const t0 = performance.now();
  const r = time ? spawnSync(time, ['-f', 'SHEARS_TIME %e %U %S', process.execPath, ...cmd], { encoding: 'utf8' }) : spawnSync(process.execPath, cmd, { encoding: 'utf8' });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0) {
    results.push({ name: run.name, error: (r.stderr ?? '').trim().split('\n').slice(-3).join(' | ') });
    continue;
  }
  const tm = /SHEARS_TIME ([\d.]+) ([\d.]+) ([\d.]+)/.exec(r.stderr ?? '');
  const stages = `${r.stderr}\n${r.stdout}`.split('\n').filter((l) => /^(shears: )?(wanda|sparsegpt|OWL)/.test(l)).map((l) => l.replace(/^shears: /, ''));
  results.push({
    name: run.name,
    command: `shears prune MODEL -o OUT ${[...common, ...run.args].join(' ')}`,
    bitsPerByte: await bitsPerByte(output),
    ...(run.pytorch !== undefined ? { pytorch: run.pytorch } : {}),
    wallSeconds: Number(wall.toFixed(2)),
    ...(tm ? { cpuSeconds: Number((Number(tm[2]) + Number(tm[3])).toFixed(2)) } : {}),
    loadAverage: loadAt,
    ...(stages.length ? { stages } : {}),
  });
}
out['runs'] = results;
out['loadAfter'] = load();
process.stdout.write(`${JSON.stringify(out, null, 1)}\n`);
