/**
 * Optional: every shared model (../shared/models or /work/shared/models) — inferred shapes of every value vs
 * onnxruntime, and simplify keeping the outputs (rtol 1e-5). Skipped when the models are absent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkGraph } from '../src/ir/edit.js';
import type { Model } from '../src/ir/graph.js';
import type { Tensor } from '../src/ir/tensor.js';
import { decodeModel, encodeModel } from '../src/onnx/codec.js';
import { loadModel } from '../src/onnx/io.js';
import { simplify } from '../src/analysis/simplify.js';
import { createSession } from '../src/runtime/session.js';
import { assertTensorEqual, crossCheck, feedsFor } from './shapes-helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DIR = [join(ROOT, '..', 'shared', 'models'), '/work/shared/models'].find((d) => existsSync(d));
const MODELS = DIR ? readdirSync(DIR).filter((f) => f.endsWith('.onnx')).sort() : [];

async function run(m: Model, feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
  const r = await createSession(m);
  const out = await r.run(feeds);
  await r.release();
  return out;
}

for (const file of MODELS) {
  test(`shared model ${file}: shapes match onnxruntime; simplify keeps outputs`, async () => {
    const model = loadModel(join(DIR!, file));
    const r = await crossCheck(model, { sizes: { N: 1 } });
    assert.deepEqual(r.info.unknownOps, []);
    const feeds = feedsFor(model, { N: 1 });
    const s = decodeModel(encodeModel(model));
    const res = simplify(s);
    assert.deepEqual(checkGraph(s.graph), []);
    assert.deepEqual(s.graph.outputs.map((o) => o.name), model.graph.outputs.map((o) => o.name));
    const [a, b] = await Promise.all([run(model, feeds), run(s, feeds)]);
    for (const k of Object.keys(a)) assertTensorEqual(b[k]!, a[k]!, `${file} output '${k}'`, 1e-5);
    assert.ok(res.removed >= 0);
  });
}

test('shared models directory', { skip: DIR === undefined ? 'no shared models here' : false }, () => {
  assert.ok(MODELS.length > 0);
});
