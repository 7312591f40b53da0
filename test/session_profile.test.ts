// SessionConfig.profile: onnxruntime's per-node profile (bench/train.js throughput reads it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import { createSession } from '../src/runtime/session.js';

function model() {
  const b = new GraphBuilder('profiled');
  const x = b.input('x', [2, 3]);
  const r = b.node('Relu', [x], {}, { name: 'the_relu' });
  b.node('Neg', [r], {}, { name: 'the_neg', output: 'y' });
  b.output('y');
  return b.model(17);
}

const feeds = { x: { dtype: DataType.FLOAT, dims: [2, 3], data: Float32Array.from([-1, 2, -3, 4, -5, 6]) } };

test('a session opened with profile writes per-node timings on endProfiling', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-profile-test-'));
  const s = await createSession(model(), { threads: 1, profile: join(dir, 'run') });
  const y = await s.run(feeds);
  assert.deepEqual([...(y['y']!.data as Float32Array)], [-0, -2, -0, -4, -0, -6]);
  await s.endProfiling();
  await s.release();
  const files = readdirSync(dir).filter((f) => f.startsWith('run') && f.endsWith('.json'));
  assert.equal(files.length, 1, `files: ${readdirSync(dir).join(', ')}`);
  const events = JSON.parse(readFileSync(join(dir, files[0]!), 'utf8')) as { cat: string; name: string; args?: { op_name?: string } }[];
  const nodes = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time'));
  assert.deepEqual([...new Set(nodes.map((e) => e.args?.op_name))].sort(), ['Neg', 'Relu']);
  assert.ok(nodes.some((e) => e.name === 'the_relu_kernel_time'));
  assert.ok(events.some((e) => e.cat === 'Session' && e.name === 'model_run'));
});

test('without profile, endProfiling is a no-op and the session still runs', async () => {
  const s = await createSession(model(), { threads: 1 });
  await s.run(feeds);
  await s.endProfiling();
  const y = await s.run(feeds);
  assert.equal((y['y']!.data as Float32Array)[1], -2);
  await s.release();
});
