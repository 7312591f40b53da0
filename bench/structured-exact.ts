/**
 * Exactness on real exports: for every model in ../shared/models, zero every parameter slice of about a third of
 * the prunable channels (units), remove exactly those, and compare the outputs (onnxruntime, batch 1) with the
 * zeroed model's. Prints JSON with the max absolute difference per model.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../src/onnx/io.js';
import { analyzeModel } from '../src/depgraph/analyze.js';
import { removeUnits } from '../src/prune/structured/surgery.js';
import type { Model } from '../src/ir/graph.js';
import { createSession } from '../src/runtime/session.js';
import { benchShapes } from '../src/metrics/latency.js';
import { floatTensor, numel } from '../src/ir/tensor.js';
import { zeroUnits } from '../src/depgraph/zero.js';

const SHARED = new URL('../../../shared/models/', import.meta.url).pathname;


async function run(model: Model): Promise<Record<string, Float32Array>> {
  const { model: m, shapes } = benchShapes(model, { batch: 1 });
  const s = await createSession(m);
  const feeds: Record<string, ReturnType<typeof floatTensor>> = {};
  for (const [k, d] of Object.entries(shapes)) feeds[k] = floatTensor(d, Array.from({ length: numel(d) }, (_, i) => Math.sin(i * 0.37)));
  const out = await s.run(feeds);
  await s.release();
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
}

const results: unknown[] = [];
for (const f of readdirSync(SHARED).filter((x) => x.endsWith('.onnx')).sort()) {
  process.stderr.write(`${f}\n`);
  const an = analyzeModel(loadModel(join(SHARED, f)));
  const chosen = new Set<number>();
  for (const g of an.dg.groups) if (g.units.length > 1) g.units.forEach((u, i) => i % 3 === 1 && chosen.add(u.id));
  const zeroed = zeroUnits(an.dg, an.model, chosen);
  const an2 = analyzeModel(zeroed);
  const pruned = removeUnits(an2.dg, chosen).model;
  const a = await run(zeroed), b = await run(pruned);
  let maxDiff = 0, maxAbs = 0;
  for (const k of Object.keys(a)) for (let i = 0; i < a[k]!.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(a[k]![i]! - b[k]![i]!));
    maxAbs = Math.max(maxAbs, Math.abs(a[k]![i]!));
  }
  results.push({ model: f, removedUnits: chosen.size, prunableUnits: an.dg.units.length, maxAbsDiff: maxDiff, maxAbsOutput: maxAbs, relative: maxDiff / Math.max(1e-12, maxAbs) });
}
process.stdout.write(`${JSON.stringify(results, null, 1)}\n`);
