// The library example of the README, run against the bundled model, through the public entry point only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  loadModel, saveModel, inspectModel, simplify, pruneUnstructured, pruneStructured, checkGraph,
} from '../src/index.js';
import { FIXTURE_MODEL } from './cli-helpers.js';

test('README library example', () => {
  const model = loadModel(FIXTURE_MODEL);
  const info = inspectModel(model, { input: [1, 1, 28, 28] });
  assert.equal(info.params, 271_402);
  simplify(model, { inputShapes: { input: ['N', 1, 28, 28] } });
  assert.deepEqual(checkGraph(model.graph), []);

  const sparse = loadModel(FIXTURE_MODEL);
  pruneUnstructured(sparse, { sparsity: 0.7, scope: 'lamp' });
  const after = inspectModel(sparse, { input: [1, 1, 28, 28] });
  assert.ok(Math.abs(after.weightSparsity - 0.7) < 0.005, String(after.weightSparsity));

  const { model: small, report } = pruneStructured(loadModel(FIXTURE_MODEL), { targetMacs: 0.5 });
  assert.ok(Math.abs(report.macsRatio - 0.5) <= 0.02, String(report.macsRatio));
  const out = join(mkdtempSync(join(tmpdir(), 'shears-readme-')), 'small.onnx');
  saveModel(small, out);
  const reloaded = inspectModel(loadModel(out), { input: [1, 1, 28, 28] });
  assert.ok(reloaded.macs < info.macs * 0.52);
  assert.deepEqual(reloaded.outputs, info.outputs);
});

test('every name the README imports from onnx-shears is exported by the entry point', async () => {
  const readme = readFileSync(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8');
  const api = await import('../src/index.js') as Record<string, unknown>;
  const names = [...readme.matchAll(/import\s*\{([^}]*)\}\s*from\s*'onnx-shears'/g)].flatMap((m) => m[1]!.split(',').map((s) => s.trim()).filter(Boolean));
  assert.ok(names.includes('runPipeline') && names.length > 10, names.join(', '));
  for (const n of names) assert.ok(n in api, `README imports ${n}, which src/index.ts does not export`);
});
