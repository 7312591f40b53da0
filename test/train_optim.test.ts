import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clipGradNorm, createOptimizer, type ParamState } from '../src/train/optim.js';
import { parseSchedule, scheduleAt } from '../src/train/schedule.js';

const close = (a: number, b: number, tol = 1e-6) => assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${a} vs ${b}`);

test('SGD momentum + Nesterov + weight decay follows PyTorch torch.optim.SGD', () => {
  const p: ParamState = { name: 'w', value: Float32Array.from([1, -2]), decay: true };
  const opt = createOptimizer({ kind: 'sgd', momentum: 0.9, nesterov: true, weightDecay: 0.1 }, [p]);
  // Reference by hand: step 1 buf = g + wd*w; update g + m*buf. Step 2 buf = m*buf + g'.
  let w = [1, -2];
  let buf = [0, 0];
  const grads = [[0.5, 0.25], [-1, 2]];
  grads.forEach((g, t) => {
    opt.step([Float32Array.from(g)], 0.1);
    const d = g.map((gi, i) => gi + 0.1 * w[i]!);
    buf = t === 0 ? d : buf.map((b, i) => 0.9 * b + d[i]!);
    w = w.map((wi, i) => wi - 0.1 * (d[i]! + 0.9 * buf[i]!));
  });
  close(p.value[0]!, w[0]!, 1e-6);
  close(p.value[1]!, w[1]!, 1e-6);
});

test('AdamW follows the decoupled weight-decay update with bias correction', () => {
  const p: ParamState = { name: 'w', value: Float32Array.from([0.5]), decay: true };
  const opt = createOptimizer({ kind: 'adamw', weightDecay: 0.01 }, [p]);
  let w = 0.5;
  let m = 0;
  let v = 0;
  [0.3, -0.1, 0.2].forEach((g, k) => {
    opt.step([Float32Array.of(g)], 0.01);
    const t = k + 1;
    m = 0.9 * m + 0.1 * g;
    v = 0.999 * v + 0.001 * g * g;
    w = w * (1 - 0.01 * 0.01) - (0.01 * (m / (1 - 0.9 ** t))) / (Math.sqrt(v / (1 - 0.999 ** t)) + 1e-8);
  });
  close(p.value[0]!, w, 1e-6);
});

test('masks keep pruned weights at exactly zero', () => {
  const p: ParamState = { name: 'w', value: Float32Array.from([1, 2, 3, 4]), decay: false, mask: Uint8Array.from([1, 0, 1, 0]) };
  const opt = createOptimizer({ kind: 'sgd', momentum: 0.9 }, [p]);
  for (let i = 0; i < 3; i++) opt.step([Float32Array.from([1, 1, 1, 1])], 0.1);
  assert.equal(p.value[1], 0);
  assert.equal(p.value[3], 0);
  assert.notEqual(p.value[0], 1);
});

test('gradient clipping scales to the global norm', () => {
  const g = [Float32Array.from([3, 0]), Float32Array.from([0, 4])];
  assert.equal(clipGradNorm(g, 1), 5);
  close(g[0]![0]!, 0.6);
  close(g[1]![1]!, 0.8);
  const h = [Float32Array.from([0.3])];
  clipGradNorm(h, 1);
  close(h[0]![0]!, 0.3);
});

test('schedules: cosine ends at 0, one-cycle matches PyTorch OneCycleLR endpoints, step decays', () => {
  close(scheduleAt({ kind: 'cosine' }, 0.1, 0, 100).lr, 0.1);
  close(scheduleAt({ kind: 'cosine' }, 0.1, 50, 100).lr, 0.05);
  close(scheduleAt({ kind: 'cosine' }, 0.1, 100, 100).lr, 0);
  const oc = (t: number) => scheduleAt({ kind: 'onecycle' }, 0.2, t, 100);
  close(oc(0).lr, 0.2 / 25);
  close(oc(0).momentum!, 0.95);
  close(oc(29).lr, 0.2); // peak at pct_start * total - 1
  close(oc(29).momentum!, 0.85);
  close(oc(99).lr, 0.2 / 25 / 1e4);
  close(scheduleAt({ kind: 'step', every: 10, gamma: 0.5 }, 1, 25, 100).lr, 0.25);
});

test('cosine:W parses to a linear warmup over W steps, then cosine to 0; bad W refused', () => {
  const spec = parseSchedule('cosine:10');
  assert.deepEqual(spec, { kind: 'cosine', warmupSteps: 10 });
  close(scheduleAt(spec, 0.1, 0, 110).lr, 0.01);
  close(scheduleAt(spec, 0.1, 9, 110).lr, 0.1);
  close(scheduleAt(spec, 0.1, 60, 110).lr, 0.05);
  close(scheduleAt(spec, 0.1, 110, 110).lr, 0);
  assert.deepEqual(parseSchedule('cosine'), { kind: 'cosine' });
  for (const bad of ['cosine:-1', 'cosine:x', 'cosine:1.5']) assert.throws(() => parseSchedule(bad), /cosine:W' needs W >= 0/);
});
