/**
 * What a user gets with no extra flags: structured pruning of fmnist_resnet20 to 50% MACs and 2 epochs of
 * fine-tuning on the full Fashion-MNIST train set, run as the user runs it (the CLI in a child process):
 *
 *   shears prune fmnist_resnet20.onnx -o OUT --structured --target-macs 0.5 --finetune-epochs 2 \
 *     --train idx:DATA@train --val idx:DATA@t10k --mean 0.2860 --std 0.3530
 *
 * then `shears eval OUT --data idx:DATA@t10k` on the written model. Prints JSON: the command, the test accuracy
 * (10k test set), the fine-tuning wall time, the defaults the run chose (distillation, BatchNorm, widths), the CPU
 * model and the load average before and after (the machine is shared: timings are not clean when it is loaded).
 * Flags after the script name are appended to the prune command (to compare with the defaults, e.g. --no-kd).
 * Usage: node dist/bench/defaults.js [extra prune flags...]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const shared = ['../shared', '/work/shared'].find((p) => existsSync(`${p}/models/fmnist_resnet20.onnx`));
if (!shared) {
  process.stderr.write('bench/defaults: needs ../shared/models/fmnist_resnet20.onnx and ../shared/data/fashion-mnist\n');
  process.exit(1);
}
const MODEL = `${shared}/models/fmnist_resnet20.onnx`;
const DATA = `idx:${shared}/data/fashion-mnist`;
const NORM = ['--mean', '0.2860', '--std', '0.3530'];
const extra = process.argv.slice(2);

const load = () => loadavg().map((v) => +v.toFixed(2));
const dir = mkdtempSync(join(tmpdir(), 'shears-defaults-'));
const out = join(dir, 'pruned.onnx');

function run(args: string[]): { stdout: string; seconds: number } {
  const t0 = performance.now();
  // stderr (progress) passes through; stdout is the JSON report.
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 2 ** 28 });
  const seconds = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`shears ${args.join(' ')} exited with ${r.status}`);
  return { stdout: r.stdout, seconds };
}

try {
  const before = load();
  const prune = ['prune', MODEL, '-o', out, '--structured', '--target-macs', '0.5', '--finetune-epochs', '2', '--train', `${DATA}@train`, '--val', `${DATA}@t10k`, ...NORM, ...extra, '--json'];
  const p = run(prune);
  const j = JSON.parse(p.stdout) as {
    macsRatio: number; paramsRatio: number; layers: { after: number }[];
    finetune: { epochs: number; seconds: number; trainSamples: number; valTop1Before?: number; valTop1?: number; choices: unknown; history: { imagesPerSec: number }[] };
  };
  const e = run(['eval', out, '--data', `${DATA}@t10k`, '--json']);
  const ev = JSON.parse(e.stdout) as { accuracy?: { top1: number; samples: number } };
  const after = load();
  const f = j.finetune;
  process.stdout.write(`${JSON.stringify({
    command: `shears ${prune.slice(0, -1).join(' ')}`,
    cpu: cpus()[0]?.model, cores: cpus().length, node: process.version,
    loadAverageBefore: before, loadAverageAfter: after,
    macsRatio: j.macsRatio, paramsRatio: j.paramsRatio, widths: [...new Set(j.layers.map((l) => l.after))].sort((a, b) => a - b),
    choices: f.choices,
    trainSamples: f.trainSamples, epochs: f.epochs,
    valTop1BeforeFinetune: f.valTop1Before, valTop1: f.valTop1,
    testTop1: ev.accuracy?.top1, testSamples: ev.accuracy?.samples,
    finetuneSeconds: +f.seconds.toFixed(1), imagesPerSec: f.history.map((h) => Math.round(h.imagesPerSec)),
    pruneCommandSeconds: +p.seconds.toFixed(1),
    torchPruning: { top1: 0.9317, finetuneSeconds: 127, note: 'reference from ../shared/README.md, not measured in this run' },
  }, null, 1)}\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
