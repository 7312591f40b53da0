/** `shears prune --structured`: targets, JSON report, plan save/replay, depth pruning, --ignore, bad arguments. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURE_MODEL, isUserError, shears } from './cli-helpers.js';
import { loadModel } from '../src/onnx/io.js';
import { createSession } from '../src/runtime/session.js';
import { floatTensor } from '../src/ir/tensor.js';
import { checkGraph } from '../src/ir/edit.js';

const dir = mkdtempSync(join(tmpdir(), 'shears-structured-'));

async function outputDims(path: string, batch = 3): Promise<number[]> {
  const s = await createSession(loadModel(path));
  const x = floatTensor([batch, 1, 28, 28], Array.from({ length: batch * 784 }, (_, i) => Math.sin(i)));
  const out = await s.run({ input: x });
  await s.release();
  return out['logits']!.dims;
}

test('--target-macs 0.5 --json: MACs within 2%, per-layer widths, a valid model with the same outputs', async () => {
  const out = join(dir, 'm.onnx');
  const r = shears(['prune', FIXTURE_MODEL, '-o', out, '--structured', '--target-macs', '0.5', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.ok(Math.abs(j.macsRatio - 0.5) <= 0.01, `MACs ratio ${j.macsRatio}`);
  assert.ok(j.after.params < j.before.params);
  assert.ok(j.layers.length > 0 && j.layers.every((l: { before: number; after: number }) => l.after <= l.before));
  assert.ok(j.layers.some((l: { before: number; after: number }) => l.after < l.before));
  // Default round-to: every pruned conv width is aligned.
  for (const l of j.layers) if (l.opType === 'Conv' && l.after !== l.before) assert.equal(l.after % 8, 0, `${l.node}: ${l.after}`);
  const m = loadModel(out);
  assert.deepEqual(checkGraph(m.graph), []);
  assert.deepEqual(await outputDims(out), [3, 10]);
});

test('--target-params and --ratio --global with --round-to 1', () => {
  const a = shears(['prune', FIXTURE_MODEL, '-o', join(dir, 'p.onnx'), '--structured', '--target-params', '0.6', '--round-to', '1', '--json']);
  assert.equal(a.code, 0, a.stderr);
  assert.ok(Math.abs(JSON.parse(a.stdout).paramsRatio - 0.6) <= 0.012);
  const b = shears(['prune', FIXTURE_MODEL, '-o', join(dir, 'g.onnx'), '--structured', '--ratio', '0.3', '--global', '--round-to', '1', '--importance', 'l1', '--json']);
  assert.equal(b.code, 0, b.stderr);
  const j = JSON.parse(b.stdout);
  assert.ok(j.removedChannels > 0.25 * j.prunableChannels && j.removedChannels < 0.35 * j.prunableChannels, `${j.removedChannels}/${j.prunableChannels}`);
});

test('--save-plan then --plan replays the same model', () => {
  const a = join(dir, 'a.onnx'), b = join(dir, 'b.onnx'), plan = join(dir, 'plan.json');
  const r1 = shears(['prune', FIXTURE_MODEL, '-o', a, '--structured', '--target-macs', '0.4', '--importance', 'fpgm', '--remove-blocks', '1', '--save-plan', plan]);
  assert.equal(r1.code, 0, r1.stderr);
  const p = JSON.parse(readFileSync(plan, 'utf8'));
  assert.equal(p.format, 'shears.structured-plan');
  assert.equal(p.removedBlocks.length, 1);
  assert.ok(p.removed.length > 0);
  const r2 = shears(['prune', FIXTURE_MODEL, '-o', b, '--structured', '--plan', plan]);
  assert.equal(r2.code, 0, r2.stderr);
  assert.deepEqual(readFileSync(b), readFileSync(a));
  // A plan naming a channel the model does not have is a user error.
  writeFileSync(join(dir, 'bad-plan.json'), JSON.stringify({ ...p, removed: ['nope@0:1'] }));
  const r3 = shears(['prune', FIXTURE_MODEL, '-o', b, '--structured', '--plan', join(dir, 'bad-plan.json')]);
  assert.equal(r3.code, 2);
  assert.match(r3.stderr.trim().split('\n').pop()!, /^shears: error: the plan removes 'nope@0:1'/);
});

test('--remove-blocks drops residual branches; the skip path remains', async () => {
  const out = join(dir, 'd.onnx');
  const r = shears(['prune', FIXTURE_MODEL, '-o', out, '--structured', '--remove-blocks', '3', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.removedBlocks.length, 3);
  const before = loadModel(FIXTURE_MODEL).graph.nodes.filter((n) => n.opType === 'Add').length;
  const after = loadModel(out).graph.nodes.filter((n) => n.opType === 'Add').length;
  assert.equal(after, before - 3);
  assert.ok(j.macsRatio < 1);
  assert.deepEqual(await outputDims(out, 2), [2, 10]);
});

test('--ignore keeps the matching layers whole', () => {
  const r = shears(['prune', FIXTURE_MODEL, '-o', join(dir, 'i.onnx'), '--structured', '--ratio', '0.5', '--ignore', 'layers\\.0/conv1', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.ok(!j.layers.some((l: { node: string; before: number; after: number }) => /layers\.0\/conv1/.test(l.node) && l.after < l.before));
  assert.ok(j.frozen.some((f: { reason: string }) => /ignored/.test(f.reason)));
});

test('--ignore keeps the matching residual blocks too: depth pruning never removes an ignored block', () => {
  // Everything ignored: no channel and no block may go; nothing pruned is exit 2, never blocks removed behind --ignore.
  const all = shears(['prune', FIXTURE_MODEL, '-o', join(dir, 'ia.onnx'), '--structured', '--target-macs', '0.5', '--ignore', '.*']);
  assert.equal(all.code, 2, all.stderr);
  assert.match(all.stderr, /every removable depth unit of the model \(\d+\) matches --ignore/);
  // The first three blocks ignored: the blocks removed are other ones (by parameter RMS, layers.2 would go fourth).
  const some = shears(['prune', FIXTURE_MODEL, '-o', join(dir, 'is.onnx'), '--structured', '--remove-blocks', '4', '--ignore', 'layers\\.[0-2]/', '--json']);
  assert.equal(some.code, 0, some.stderr);
  const j = JSON.parse(some.stdout);
  assert.equal(j.removedBlocks.length, 4);
  assert.ok(!j.removedBlocks.some((b: string) => /layers\.[0-2]\//.test(b)), j.removedBlocks.join(', '));
  const ex = shears(['prune', FIXTURE_MODEL, '-o', join(dir, 'ie.onnx'), '--structured', '--remove-blocks', '7', '--ignore', 'layers\\.0/Add']);
  assert.equal(ex.code, 2);
  assert.match(ex.stderr, /cannot remove 7 residual blocks: the model has 6 removable ones besides those --ignore keeps/);
});

test('bad arguments exit 2 with one line', () => {
  const o = join(dir, 'x.onnx');
  const bad: string[][] = [
    ['--ratio', '1.5'],
    ['--ratio', '0.3', '--target-macs', '0.5'],
    ['--target-macs', '0'],
    ['--importance', 'magic', '--ratio', '0.3'],
    ['--aggregate', 'median', '--ratio', '0.3'],
    ['--round-to', '0', '--ratio', '0.3'],
    ['--max-layer-ratio', '0', '--ratio', '0.3'],
    ['--ignore', '(', '--ratio', '0.3'],
    ['--remove-blocks', '99'],
    ['--plan', join(dir, 'missing.json')],
    ['--input-shape', 'nope=1x1x28x28', '--ratio', '0.3'],
    [],
  ];
  for (const extra of bad) {
    const r = shears(['prune', FIXTURE_MODEL, '-o', o, '--structured', ...extra]);
    assert.ok(isUserError(r), `${extra.join(' ')}: code ${r.code}, stderr ${r.stderr}`);
  }
  assert.ok(isUserError(shears(['prune', FIXTURE_MODEL, '--structured', '--ratio', '0.3'])));
});

test('--target-latency plans widths with the measured latency table and reports the prediction', () => {
  // the planner alone (--no-landing-check): the plan's prediction is under the target
  const r = shears(['prune', FIXTURE_MODEL, '-o', join(dir, 'l.onnx'), '--structured', '--target-latency', '0.7', '--batch', '8', '--threads', '1', '--no-latency-cache', '--no-landing-check', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.ok(j.latency.dense > 0 && j.latency.predicted > 0);
  assert.ok(j.latency.ratio <= 0.7 + 1e-9 && j.latency.measured > 0);
  assert.equal(j.latency.landing, undefined);
  assert.ok(j.macsRatio <= 1);
  assert.deepEqual(checkGraph(loadModel(join(dir, 'l.onnx')).graph), []);
  // with the landing check (the default) the plan kept is the one measured closest to the target; its prediction
  // may be over the target where the first plan ran under it (timings on this machine: no figure asserted)
  const c = shears(['prune', FIXTURE_MODEL, '-o', join(dir, 'lc.onnx'), '--structured', '--target-latency', '0.7', '--batch', '8', '--threads', '1', '--no-latency-cache', '--json']);
  assert.equal(c.code, 0, c.stderr);
  const L = JSON.parse(c.stdout).latency.landing;
  assert.ok(L.attempts.length >= 1 && L.attempts.length <= 3, JSON.stringify(L));
  assert.equal(L.attempts[0].planned, 0.7);
  assert.equal(L.measured, L.attempts[L.kept].measured);
  for (const a of L.attempts) assert.ok(Math.abs(L.measured - 0.7) <= Math.abs(a.measured - 0.7) + 1e-12, JSON.stringify(L));
  assert.match(c.stderr, /landing check: the plan measures \d/);
  assert.deepEqual(checkGraph(loadModel(join(dir, 'lc.onnx')).graph), []);
});

test('a MAC target beyond channel pruning removes residual blocks; explicit blocks count against the original MACs', () => {
  const a = shears(['prune', FIXTURE_MODEL, '-o', join(dir, 'ad.onnx'), '--structured', '--target-macs', '0.1', '--max-layer-ratio', '0.5', '--json']);
  assert.equal(a.code, 0, a.stderr);
  const j = JSON.parse(a.stdout);
  assert.ok(j.removedBlocks.length > 0);
  assert.ok(Math.abs(j.macsRatio - 0.1) <= 0.002, `${j.macsRatio}`);
  const b = shears(['prune', FIXTURE_MODEL, '-o', join(dir, 'ad2.onnx'), '--structured', '--target-macs', '0.4', '--remove-blocks', '2', '--json']);
  assert.equal(b.code, 0, b.stderr);
  const k = JSON.parse(b.stdout);
  assert.equal(k.removedBlocks.length, 2);
  assert.ok(Math.abs(k.macsRatio - 0.4) <= 0.008, `${k.macsRatio}`);
});

test('--target-latency on a model whose first segment reads an integer input (token ids): exit 2 naming the segment and the MAC/param targets, nothing written', async () => {
  const { GraphBuilder } = await import('../src/ir/builder.js');
  const { DataType } = await import('../src/ir/dtype.js');
  const { saveModel } = await import('../src/onnx/io.js');
  const { existsSync } = await import('node:fs');
  const b = new GraphBuilder();
  const ids = b.input('ids', [1, 8], DataType.INT64);
  const emb = b.node('Gather', [b.init('emb', floatTensor([32, 16], Array.from({ length: 512 }, (_, i) => Math.sin(i)))), ids], { axis: 0 });
  const h = b.node('Relu', [b.node('MatMul', [emb, b.init('w1', floatTensor([16, 24], Array.from({ length: 384 }, (_, i) => Math.cos(i))))])]);
  const y = b.node('MatMul', [h, b.init('w2', floatTensor([24, 4], Array.from({ length: 96 }, (_, i) => Math.sin(3 * i))))], {}, { output: 'y' });
  b.output(y, [1, 8, 4]);
  const src = join(dir, 'ids.onnx');
  saveModel(b.model(17), src);
  const out = join(dir, 'ids-out.onnx');
  const r = shears(['prune', src, '-o', out, '--structured', '--target-latency', '0.7', '--threads', '1', '--no-latency-cache']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /a latency target cannot be planned on this model: its segment 0 \(from Gather '[^']+'\) cannot be timed as a standalone graph \(segment input 'ids' is not float and not constant\); give a MAC or parameter target \(--target-macs, --target-params\) instead/);
  assert.equal(existsSync(out), false);
});
