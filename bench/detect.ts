/**
 * Every issue-18 pruning figure for fmnist_det in one JSON (README "Pruning detectors"):
 * - dense mAP50 / mAP50-95 on the validation split (evaluateDetection);
 * - one-shot `shears prune --structured --target-macs 0.5 --repair lsq --calib folder:TRAIN --scale --color rgb`
 *   (the detector defaults): MACs, mAP;
 * - recovery: `shears finetune ONE-SHOT --teacher DENSE --train folder:TRAIN --epochs E` (the detector defaults:
 *   distillation on the pre-decode head, validated on held-out canvases): fine-tuning wall time and mAP;
 * - latency of the dense and the pruned models at batch 1, 1 thread, measured interleaved (wall and CPU medians);
 * - the NMS-free end-to-end variant (bench/det-e2e.ts): dense mAP, one-shot pruned (same command) mAP;
 * - CPU model and load averages.
 * Usage: node dist/bench/detect.js [SHARED_DIR=../shared] [--epochs E=4] [--skip-recovery] [--work DIR]
 *   [--finetune 'FLAGS'] (more `shears finetune` flags for the recovery, e.g. '--det-distill mse --lr 0.002')
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { openDataset } from '../src/data/spec.js';
import { evaluateDetection } from '../src/metrics/detection-eval.js';
import { measureLatencies } from '../src/metrics/latency.js';
import { appendEndToEndHead } from './det-e2e.js';

const args = process.argv.slice(2);
const flag = (name: string) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined; };
const shared = args[0] !== undefined && !args[0].startsWith('--') ? args[0] : '../shared';
const epochs = Number(flag('--epochs') ?? 4);
const work = flag('--work') ?? join(tmpdir(), 'shears-detect-bench');
mkdirSync(work, { recursive: true });
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const DENSE = join(shared, 'models', 'fmnist_det.onnx');
const DATA = join(shared, 'data', 'fmnist-det');
const TRAIN = `folder:${join(DATA, 'images', 'train')}`;
if (!existsSync(DENSE)) {
  console.log(JSON.stringify({ skipped: `needs ${DENSE} (../shared)` }));
  process.exit(0);
}
const PRE = { scale: 1 / 255, color: 'rgb' as const };
const round = (v: number | undefined, d = 4) => (v === undefined ? undefined : +v.toFixed(d));

function shears(cmd: string[]): { json: Record<string, unknown>; seconds: number; log: string } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [CLI, ...cmd, '--json'], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`shears ${cmd.join(' ')} failed (${r.status}): ${r.stderr}`);
  return { json: JSON.parse(r.stdout) as Record<string, unknown>, seconds: (performance.now() - t0) / 1000, log: r.stderr };
}

async function mAP(file: string): Promise<{ map50: number; map5095: number }> {
  const ds = openDataset(`yolo:${join(DATA, 'data.yaml')}@val`, PRE);
  const r = await evaluateDetection(loadModel(file), ds, {});
  const m = r.map!;
  return { map50: round(m.map50)!, map5095: round(m.map5095)! };
}

const load: number[][] = [loadavg()];
const out: Record<string, unknown> = { cpu: cpus()[0]?.model, cores: cpus().length };
out['dense'] = await mAP(DENSE);

// One-shot: the detector defaults (round-to, activation importance) with lsq repair.
const ONESHOT = join(work, 'oneshot.onnx');
const prune = (src: string, dst: string) => shears(['prune', src, '--structured', '--target-macs', '0.5', '--repair', 'lsq', '--calib', TRAIN, '--scale', '--color', 'rgb', '-o', dst]);
const p = prune(DENSE, ONESHOT);
const macs = round(p.json['macsRatio'] as number | undefined);
out['oneshot'] = { ...(await mAP(ONESHOT)), macs, seconds: round(p.seconds, 1), defaults: p.log.split('\n').filter((l) => /a detector/.test(l)) };
load.push(loadavg());

// Recovery by the detector's default distillation.
if (!args.includes('--skip-recovery')) {
  const REC = join(work, 'recovered.onnx');
  const more = (flag('--finetune') ?? '').split(/\s+/).filter(Boolean);
  const f = shears(['finetune', ONESHOT, '--teacher', DENSE, '--train', TRAIN, '--scale', '--color', 'rgb', '--epochs', String(epochs), ...more, '-o', REC]);
  const hist = (f.json['history'] as { seconds: number; imagesPerSec: number }[] | undefined) ?? [];
  out['recovery'] = {
    ...(await mAP(REC)), epochs, flags: more, finetuneSeconds: round(f.json['seconds'] as number, 1), commandSeconds: round(f.seconds, 1),
    epochSeconds: hist.map((h) => round(h.seconds, 1)), imagesPerSec: hist.map((h) => round(h.imagesPerSec, 1)),
    valRelMse: [f.json['initialValRelMse'], f.json['finalValRelMse']], detector: f.json['detector'],
    choices: f.log.split('\n').filter((l) => /detector|AdamW|validation|kept/.test(l)),
  };
  load.push(loadavg());
}

// Latency, batch 1, 1 thread, interleaved.
const lat = await measureLatencies([loadModel(DENSE), loadModel(ONESHOT)], { batch: 1, threads: 1, warmup: 10, runs: 100 });
out['latency'] = {
  batch: 1, threads: 1, runs: 100,
  denseMs: round(lat[0]!.median, 2), prunedMs: round(lat[1]!.median, 2), speedup: round(lat[0]!.median / lat[1]!.median, 3),
  denseCpuMs: round(lat[0]!.cpuMedian, 2), prunedCpuMs: round(lat[1]!.cpuMedian, 2), cpuSpeedup: round(lat[0]!.cpuMedian / lat[1]!.cpuMedian, 3),
};
load.push(loadavg());

// NMS-free end-to-end variant: built from the dense model, pruned with the same command.
const E2E = join(work, 'e2e.onnx'), E2EP = join(work, 'e2e-pruned.onnx');
saveModel(appendEndToEndHead(loadModel(DENSE)), E2E);
const pe = prune(E2E, E2EP);
out['nmsFree'] = { dense: await mAP(E2E), pruned: await mAP(E2EP), output: loadModel(E2EP).graph.outputs[0]!.type?.shape, pruneSeconds: round(pe.seconds, 1) };
load.push(loadavg());
out['loadAverage'] = load.map((l) => l.map((v) => +v.toFixed(2)));
console.log(JSON.stringify(out, null, 1));
