/**
 * Times loadModel + inferShapes + simplify on each shared model (../shared/models or /work/shared/models) and
 * reports what simplify did (nodes before/after, values folded, Shape nodes left), with the declared symbolic
 * batch and with a fixed batch of 1. Prints one JSON object.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inferShapes } from '../src/analysis/shapes.js';
import { simplify } from '../src/analysis/simplify.js';
import type { Dim, Model } from '../src/ir/graph.js';
import { loadModel } from '../src/onnx/io.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DIR = process.argv[2] ?? [join(ROOT, '..', 'shared', 'models'), '/work/shared/models'].find((d) => existsSync(d));
if (!DIR) {
  console.log(JSON.stringify({ error: 'no shared models directory' }));
  process.exit(0);
}

function ms(t0: number): number {
  return Math.round((performance.now() - t0) * 100) / 100;
}

/** Median of `reps` timings of f (f gets the repetition index). */
function time<T>(f: (rep: number) => T, reps = 5): { ms: number; value: T } {
  const ts: number[] = [];
  let value!: T;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    value = f(i);
    ts.push(ms(t0));
  }
  ts.sort((a, b) => a - b);
  return { ms: ts[Math.floor(reps / 2)]!, value };
}

function batchOne(m: Model): Record<string, Dim[]> {
  const out: Record<string, Dim[]> = {};
  for (const i of m.graph.inputs) if (i.type?.shape && !m.graph.initializers.has(i.name)) out[i.name] = i.type.shape.map((d) => (typeof d === 'number' ? d : 1));
  return out;
}

const results: Record<string, unknown> = {};
for (const file of readdirSync(DIR).filter((f) => f.endsWith('.onnx')).sort()) {
  const path = join(DIR, file);
  const load = time(() => loadModel(path));
  const model = load.value;
  const infer = time(() => inferShapes(model));
  const fresh = () => Array.from({ length: 5 }, () => loadModel(path));
  const copies = fresh();
  const simp = time((i) => simplify(copies[i]!));
  const copies1 = fresh();
  const fixed = time((i) => simplify(copies1[i]!, { inputShapes: batchOne(model) }));
  const shapes = (m: Model) => m.graph.nodes.filter((n) => n.opType === 'Shape').length;
  results[file] = {
    nodes: model.graph.nodes.length,
    loadMs: load.ms,
    inferShapesMs: infer.ms,
    simplifyMs: simp.ms,
    totalMs: Math.round((load.ms + infer.ms + simp.ms) * 100) / 100,
    unknownOps: infer.value.unknownOps.length,
    symbolicBatch: { nodesAfter: simp.value.model.graph.nodes.length, folded: simp.value.folded, removed: simp.value.removed, shapeNodesLeft: shapes(simp.value.model) },
    batch1: { nodesAfter: fixed.value.model.graph.nodes.length, folded: fixed.value.folded, removed: fixed.value.removed, shapeNodesLeft: shapes(fixed.value.model) },
  };
}
console.log(JSON.stringify({ dir: DIR, note: 'median of 5 runs each; simplify runs on freshly loaded copies (it re-infers shapes each round)', models: results }, null, 1));
