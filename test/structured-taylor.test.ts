/** Taylor importance: weight gradients (finite differences), channel scores, and the CLI path with IDX data. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphBuilder } from '../src/ir/builder.js';
import { floatTensor, numel } from '../src/ir/tensor.js';
import type { Model } from '../src/ir/graph.js';
import { createSession } from '../src/runtime/session.js';
import { weightGradients } from '../src/importance/taylor.js';
import { unitImportance } from '../src/importance/importance.js';
import { analyzeModel } from '../src/depgraph/analyze.js';
import { cloneModel } from '../src/ir/clone.js';
import { writeIdx } from './data-helpers.js';
import { FIXTURE_MODEL, shears } from './cli-helpers.js';

const w = (dims: number[], k: number) => floatTensor(dims, Array.from({ length: numel(dims) }, (_, i) => 0.5 * Math.sin(i * 1.3 + k)));

function tiny(): Model {
  const b = new GraphBuilder();
  const x = b.input('x', ['N', 1, 4, 4]);
  const c = b.node('Relu', [b.node('Conv', [x, b.init('cw', w([3, 1, 3, 3], 1)), b.init('cb', w([3], 2))], { pads: [1, 1, 1, 1] })]);
  const f = b.node('Flatten', [b.node('GlobalAveragePool', [c])], { axis: 1 });
  const y = b.node('Gemm', [f, b.init('fw', w([4, 3], 3)), b.init('fb', w([4], 4))], { transB: 1 }, { output: 'y' });
  b.output(y, ['N', 4]);
  return b.model();
}

async function ceLoss(model: Model, x: Float32Array, labels: Int32Array): Promise<number> {
  const s = await createSession(model);
  const out = (await s.run({ x: floatTensor([labels.length, 1, 4, 4], x) }))['y']!.data as Float32Array;
  await s.release();
  let loss = 0;
  for (let i = 0; i < labels.length; i++) {
    const row = Array.from(out.subarray(i * 4, i * 4 + 4));
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
    loss += lse - row[labels[i]!]!;
  }
  return loss / labels.length;
}

test('weight gradients match finite differences of the cross-entropy', async () => {
  const model = tiny();
  const x = Float32Array.from({ length: 2 * 16 }, (_, i) => Math.cos(i * 0.7));
  const labels = Int32Array.from([1, 3]);
  const grads = await weightGradients(model, { x, sampleDims: [1, 4, 4], labels, n: 2 }, { batch: 2, batches: 1 });
  for (const [name, idx] of [['cw', 4], ['cw', 13], ['fw', 5], ['fb', 2]] as const) {
    const g = grads.get(name)![idx]!;
    const eps = 1e-2;
    const shifted = (d: number) => {
      const m = cloneModel(model);
      const t = m.graph.initializers.get(name)!;
      const data = Float32Array.from(t.data as Float32Array);
      data[idx]! += d;
      m.graph.initializers.set(name, { ...t, data });
      return m;
    };
    const fd = ((await ceLoss(shifted(eps), x, labels)) - (await ceLoss(shifted(-eps), x, labels))) / (2 * eps);
    assert.ok(Math.abs(fd - g) <= 2e-3 + 2e-2 * Math.abs(fd), `${name}[${idx}]: gradient ${g}, finite difference ${fd}`);
  }
  // Taylor scores: a channel whose weights are all zero scores 0.
  const an = analyzeModel(model);
  const gz = new Map(grads);
  const zeroed = cloneModel(an.model);
  const cw = zeroed.graph.initializers.get('cw')!;
  const data = Float32Array.from(cw.data as Float32Array);
  data.fill(0, 9, 18);
  zeroed.graph.initializers.set('cw', { ...cw, data });
  const fw = zeroed.graph.initializers.get('fw')!;
  const fdata = Float32Array.from(fw.data as Float32Array);
  for (let o = 0; o < 4; o++) fdata[o * 3 + 1] = 0;
  zeroed.graph.initializers.set('fw', { ...fw, data: fdata });
  const an2 = analyzeModel(zeroed);
  const s = unitImportance(an2.dg, { kind: 'taylor', gradients: gz, normalize: false, aggregate: 'sum' });
  const unit1 = an2.dg.elementUnit[an2.dg.spaceOf.get('cw@0')!.offset + 1]!;
  const b1 = an2.dg.spaceOf.get('cb@0')!;
  assert.ok(s[unit1]! < 1e-9 + Math.abs(grads.get('cb')![1]! * (an2.model.graph.initializers.get('cb')!.data as Float32Array)[1]!) + 1e-6);
  assert.ok(b1);
  assert.ok([...s].some((v, i) => i !== unit1 && v > s[unit1]!));
});

test('prune --structured --importance taylor reads labelled IDX data', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-taylor-'));
  const n = 64;
  writeIdx(join(dir, 't10k-images-idx3-ubyte'), [n, 28, 28], Array.from({ length: n * 784 }, (_, i) => (i * 37) % 256));
  writeIdx(join(dir, 't10k-labels-idx1-ubyte'), [n], Array.from({ length: n }, (_, i) => i % 10));
  const r = shears(['prune', FIXTURE_MODEL, '-o', join(dir, 'o.onnx'), '--structured', '--target-macs', '0.5', '--importance', 'taylor',
    '--taylor-data', dir, '--taylor-batches', '2', '--scale', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.ok(Math.abs(j.macsRatio - 0.5) <= 0.01);
  const bad = shears(['prune', FIXTURE_MODEL, '-o', join(dir, 'o.onnx'), '--structured', '--target-macs', '0.5', '--importance', 'taylor']);
  assert.equal(bad.code, 2);
});
