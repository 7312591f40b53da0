/**
 * Repair figures on fmnist_resnet20 (../shared): 512 calibration images from the Fashion-MNIST train set (seed 0),
 * accuracy on the full 10k test set. Prints one JSON object.
 *   node dist/bench/repair.js [experiment ...]   experiments: dense, u70, nm24, structured (default: all)
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { openDataset } from '../src/data/spec.js';
import type { Model } from '../src/ir/graph.js';
import { evaluate } from '../src/metrics/evaluate.js';
import { loadModel } from '../src/onnx/io.js';
import { repair, type RepairOptions } from '../src/repair/index.js';
import { cloneModel as editableCopy } from '../src/ir/clone.js';
import { pruneUnstructured } from '../src/sparsity/unstructured.js';
import { pruneStructured } from '../src/prune/structured/index.js';

const SHARED = process.env['SHEARS_SHARED'] ?? join(process.cwd(), '..', 'shared');
const MODEL = join(SHARED, 'models', 'fmnist_resnet20.onnx');
const DATA = join(SHARED, 'data', 'fashion-mnist');
const PRE = { scale: 1 / 255, mean: [0.286], std: [0.353] };
const THREADS = Number(process.env['THREADS'] ?? 2);

async function acc(m: Model): Promise<number> {
  const r = await evaluate(m, openDataset(`${DATA}@t10k`, PRE), { batchSize: 250, threads: THREADS });
  return r.accuracy!.top1;
}

async function main() {
  if (!existsSync(MODEL)) throw new Error(`needs ${MODEL}`);
  const which = process.argv.slice(2);
  const want = (k: string) => which.length === 0 || which.includes(k);
  const dense = loadModel(MODEL);
  const calib = openDataset(`${DATA}@train`, PRE).sample(Number(process.env['CALIB'] ?? 512), 0);
  const out: Record<string, unknown> = { calibSamples: calib.size, threads: THREADS };
  if (want('dense')) out['dense'] = await acc(dense);
  const run = async (name: string, pruned: Model, opts: RepairOptions) => {
    const { model, report } = await repair(dense, pruned, calib, { threads: THREADS, ...opts });
    const a = await acc(model);
    out[name] = { top1: a, repairSeconds: report.seconds, layers: report.layers.length, skipped: report.skipped };
    process.stderr.write(`${name}: ${(100 * a).toFixed(2)}% in ${report.seconds.toFixed(1)} s\n`);
    if (process.env['VERBOSE']) for (const l of report.layers) process.stderr.write(`  ${JSON.stringify(l)}\n`);
  };
  if (want('u70')) {
    const pruned = editableCopy(dense);
    pruneUnstructured(pruned, { sparsity: 0.7, scope: 'global' });
    out['u70_magnitude'] = await acc(pruned);
    process.stderr.write(`u70 magnitude: ${out['u70_magnitude']}\n`);
    await run('u70_obs', pruned, { method: 'obs' });
    await run('u70_obs_keepmask', pruned, { method: 'obs', keepMask: true });
    await run('u70_wanda', pruned, { method: 'wanda' });
    // one-shot from the dense model with the same sparsity in every layer (SparseGPT's and Wanda's setting)
    await run('u70_uniform_obs', dense, { method: 'obs', sparsity: 0.7 });
    await run('u70_uniform_wanda', dense, { method: 'wanda', sparsity: 0.7 });
  }
  if (want('nm24')) {
    const pruned = editableCopy(dense);
    pruneUnstructured(pruned, { pattern: { n: 2, m: 4 } });
    out['nm24_magnitude'] = await acc(pruned);
    process.stderr.write(`2:4 magnitude: ${out['nm24_magnitude']}\n`);
    await run('nm24_obs', pruned, { method: 'obs', pattern: { n: 2, m: 4 } });
    await run('nm24_wanda', pruned, { method: 'wanda', pattern: { n: 2, m: 4 } });
  }
  if (want('structured')) {
    const imp = (process.env['IMPORTANCE'] ?? 'l2') as 'l2';
    const res = pruneStructured(dense, { targetMacs: Number(process.env['MACS'] ?? 0.5), importance: imp });
    const pruned = res.model;
    out['structured_macsRatio'] = res.report.macsRatio;
    out['structured_oneshot'] = await acc(pruned);
    process.stderr.write(`structured ${res.report.macsRatio.toFixed(3)} MACs one-shot: ${out['structured_oneshot']}\n`);
    await run('structured_stats', pruned, { method: 'stats' });
    await run('structured_lsq', pruned, { method: 'lsq' });
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});
