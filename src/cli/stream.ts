/**
 * `shears prune BIG.onnx -o OUT.onnx --sparsity S|--pattern N:M --method wanda|sparsegpt --calib SPEC` (or the
 * older spelling `--sparsity S --repair wanda|obs --calib SPEC`) on a model with external data: pruned layer by
 * layer without holding the model (prune/stream.ts), the output written as the layers finish (onnx/io.ts
 * StreamedSave). Taken when the recipe is exactly that (unstructured or N:M pruning chosen by Wanda or SparseGPT
 * on calibration data, nothing after it, no layer selection flags); any other recipe runs in memory.
 */
import type { Model } from '../ir/graph.js';
import { isLazy, lazySource, lazyStats } from '../ir/lazy.js';
import { bindTokens, isTokenData } from '../data/tokens.js';
import { ShearsError } from '../errors.js';
import { protectInput } from '../fs/files.js';
import { StreamedSave } from '../onnx/io.js';
import { withDefaults } from '../pipeline/options.js';
import type { Recipe } from '../pipeline/recipe.js';
import { NM_OPTIONS, REPAIR_OPTIONS, UNSTRUCTURED_OPTIONS, type NMStep, type RepairStep, type UnstructuredStep } from '../pipeline/steps.js';
import { pruneLayerwise } from '../prune/stream.js';
import { parsePattern } from '../sparsity/nm.js';
import { openData } from './data.js';

export interface StreamPlan {
  method: 'wanda' | 'sparsegpt';
  sparsity?: number;
  pattern?: string;
  calib: string;
  calibSize: number;
  calibSeed: number;
  damp: number;
  blockSize?: number;
  threads?: number;
}

const PRUNE_KEYS = new Set(['kind', 'mode', 'sparsity', 'pattern', 'method', 'calib', 'calibSize', 'calibSeed', 'damp', 'sparsegptBlock', 'threads']);
const REPAIR_KEYS = new Set(['kind', 'methods', 'calib', 'calibSize', 'calibSeed', 'damp', 'pattern']);

/** Whether the model's weights are external data, read when used (a model that may not fit in memory). */
export function hasLazyWeights(model: Model): boolean {
  for (const t of model.graph.initializers.values()) if (isLazy(t)) return true;
  return false;
}

/** The streamed run the recipe amounts to, or undefined when it needs the model in memory. */
export function streamPlan(model: Model, recipe: Recipe): StreamPlan | undefined {
  const n = recipe.steps.length;
  if (!hasLazyWeights(model) || n < 1 || n > 2 || recipe.preprocess || (recipe as { feeds?: unknown }).feeds) return undefined;
  const [prune, rep] = recipe.steps as unknown as Record<string, unknown>[];
  if (prune?.['kind'] !== 'prune' || (prune['mode'] !== 'unstructured' && prune['mode'] !== 'nm')) return undefined;
  if (Object.keys(prune).some((k) => !PRUNE_KEYS.has(k))) return undefined;
  const pattern = prune['pattern'] as string | undefined;
  const common = { ...(prune['sparsity'] !== undefined ? { sparsity: prune['sparsity'] as number } : {}), ...(pattern !== undefined ? { pattern } : {}) };
  if (!rep) {
    // --method wanda | sparsegpt: the prune step alone, with its options' defaults
    const p = prune['mode'] === 'nm' ? withDefaults(NM_OPTIONS, prune as unknown as NMStep) : withDefaults(UNSTRUCTURED_OPTIONS, prune as unknown as UnstructuredStep);
    if ((p.method !== 'wanda' && p.method !== 'sparsegpt') || p.calib === undefined) return undefined;
    return {
      method: p.method,
      ...common,
      calib: p.calib,
      calibSize: p.calibSize,
      calibSeed: p.calibSeed,
      damp: p.damp,
      blockSize: p.sparsegptBlock,
      ...(p.threads !== undefined ? { threads: p.threads } : {}),
    };
  }
  // magnitude masks re-chosen by --repair wanda | obs: the same as --method wanda | sparsegpt from the dense weights
  if (rep['kind'] !== 'repair' || Object.keys(rep).some((k) => !REPAIR_KEYS.has(k))) return undefined;
  if (prune['method'] !== undefined && prune['method'] !== 'l1' && prune['method'] !== 'magnitude') return undefined;
  const r = withDefaults(REPAIR_OPTIONS, rep as unknown as RepairStep);
  const methods = (r.methods as string[]).filter((m) => m !== 'none');
  if (methods.length !== 1 || (methods[0] !== 'wanda' && methods[0] !== 'obs')) return undefined;
  const calib = (r.calib ?? prune['calib']) as string | undefined;
  if (calib === undefined) return undefined;
  return {
    method: methods[0] === 'obs' ? 'sparsegpt' : 'wanda',
    ...common,
    ...(r.pattern !== undefined ? { pattern: r.pattern as string } : {}),
    calib,
    calibSize: (rep['calibSize'] ?? r.calibSize) as number,
    calibSeed: (rep['calibSeed'] ?? r.calibSeed) as number,
    damp: r.damp as number,
  };
}

/** Runs the streamed prune and writes `output` with external data; prints the report (JSON with `json`). */
export async function runStreamed(model: Model, modelPath: string, output: string, plan: StreamPlan, json: boolean): Promise<void> {
  const t0 = performance.now();
  // the input's side files are inputs too: no write of this run replaces them
  for (const t of model.graph.initializers.values()) {
    const src = lazySource(t);
    if (src) protectInput(src.file);
  }
  let calib = await openData(plan.calib, {});
  if (isTokenData(calib)) calib = bindTokens(calib, model);
  calib = calib.sample(plan.calibSize, plan.calibSeed);
  const out = new StreamedSave(output);
  try {
    const { model: pruned, report } = await pruneLayerwise(model, calib, {
      method: plan.method,
      ...(plan.sparsity !== undefined ? { sparsity: plan.sparsity } : {}),
      ...(plan.pattern !== undefined ? { pattern: parsePattern(plan.pattern) } : {}),
      damp: plan.damp,
      ...(plan.blockSize !== undefined ? { blockSize: plan.blockSize } : {}),
      ...(plan.threads !== undefined ? { threads: plan.threads } : {}),
      output: out,
      onProgress: (p) => {
        if (process.stderr.isTTY) process.stderr.write(`\rstreamed ${plan.method}: ${p.done}/${p.total} layers (${p.seconds.toFixed(1)} s)${p.done >= p.total ? '\n' : ''}`);
      },
    });
    if (report.layers.length === 0) throw new ShearsError(`nothing to prune: no layer ${plan.method} can prune (${report.skipped.length} skipped${report.skipped[0] ? `, e.g. ${report.skipped[0].node}: ${report.skipped[0].reason}` : ''})`);
    const saved = out.finish(pruned);
    const seconds = (performance.now() - t0) / 1000;
    const params = report.layers.reduce((a, l) => a + l.k * l.rows, 0);
    const zeros = report.layers.reduce((a, l) => a + l.zeros, 0);
    const lazy = lazyStats();
    if (json) {
      process.stdout.write(`${JSON.stringify({ model: modelPath, output, externalData: saved.externalFile, streamed: true, method: plan.method, ...(plan.sparsity !== undefined ? { sparsity: plan.sparsity } : {}), ...(plan.pattern ? { pattern: plan.pattern } : {}), calibSamples: report.calibSamples, prunedParams: params, zeros, peakWeightBytes: lazy.peak, seconds, steps: report.steps, statsSeconds: report.statsSeconds, solveSeconds: report.solveSeconds, layers: report.layers, skipped: report.skipped }, null, 2)}\n`);
      return;
    }
    const lines = [`streamed ${plan.method === 'sparsegpt' ? 'SparseGPT' : 'Wanda'}: ${report.layers.length} layers pruned, ${zeros} of ${params} weights zero (${((100 * zeros) / Math.max(1, params)).toFixed(2)}%) on ${report.calibSamples} calibration samples in ${seconds.toFixed(1)} s`];
    for (const s of report.skipped) lines.push(`  skipped ${s.node}: ${s.reason}`);
    for (const l of report.layers) if (l.note) lines.push(`  ${l.node}: ${l.note}`);
    lines.push(`wrote ${output} (external data ${saved.externalFile})`);
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    out.abort();
  }
}
