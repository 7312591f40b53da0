import assert from 'node:assert/strict';
import { test } from 'node:test';
import { getMasks } from '../src/sparsity/masks.js';
import { cubicSparsity, gradualMagnitudePruning, iterativeStructured, lotteryTicket } from '../src/prune/iterative.js';
import { cnn, synth } from './train_fixtures.js';

const ft = { train: synth(240, 1), val: synth(90, 2), batch: 32, lr: 0.05, threads: 1, progress: false as const };

function sparsityOf(m: ReturnType<typeof cnn>): { s: number; violations: number } {
  let total = 0;
  let pruned = 0;
  let violations = 0;
  for (const [k, mask] of getMasks(m)) {
    const d = m.graph.initializers.get(k)!.data as Float32Array;
    for (let i = 0; i < mask.length; i++) {
      total++;
      if (!mask[i]) {
        pruned++;
        if (d[i] !== 0) violations++;
      }
    }
  }
  return { s: pruned / total, violations };
}

test('cubic sparsity schedule (Zhu & Gupta)', () => {
  assert.equal(cubicSparsity(0, 4, 0, 0.8), 0);
  assert.equal(cubicSparsity(4, 4, 0, 0.8), 0.8);
  assert.ok(Math.abs(cubicSparsity(2, 4, 0, 0.8) - 0.8 * (1 - 0.125)) < 1e-12);
  assert.ok(cubicSparsity(1, 4, 0.1, 0.8) > 0.1);
});

test('gradual magnitude pruning reaches the final sparsity step by step, masks enforced', async () => {
  const r = await gradualMagnitudePruning(cnn(), { finalSparsity: 0.6, steps: 3, epochsPerStep: 1, finetune: ft });
  assert.equal(r.stages.length, 3);
  const targets = r.stages.map((s) => s.target);
  assert.ok(targets[0]! < targets[1]! && targets[1]! < targets[2]!);
  const { s, violations } = sparsityOf(r.model);
  assert.ok(Math.abs(s - 0.6) < 0.03, `sparsity ${s}`);
  assert.equal(violations, 0);
  assert.ok(r.stages.every((st) => st.history.length === 1 && st.acc !== undefined));
});

test('lottery ticket: rounds compound to the final sparsity, masks enforced, bad rewind point refused', async () => {
  const r = await lotteryTicket(cnn(), { finalSparsity: 0.75, rounds: 2, epochsPerRound: 2, rewindEpoch: 1, finetune: ft });
  assert.equal(r.stages.length, 2);
  assert.ok(Math.abs(r.stages[0]!.target - 0.5) < 1e-9);
  const { s, violations } = sparsityOf(r.model);
  assert.ok(Math.abs(s - 0.75) < 0.03, `sparsity ${s}`);
  assert.equal(violations, 0);
  await assert.rejects(lotteryTicket(cnn(), { finalSparsity: 0.5, epochsPerRound: 1, rewindEpoch: 1, finetune: ft }), /rewind epoch/);
});

test('iterative structured pruning shrinks channels over the steps', async () => {
  const before = cnn().graph.initializers.get('w1')!.dims[0]!;
  const r = await iterativeStructured(cnn(), { targetMacs: 0.5, steps: 2, epochsPerStep: 1, finetune: ft, prune: { inputShapes: { input: [1, 1, 8, 8] } } });
  assert.equal(r.stages.length, 2);
  const after = r.model.graph.initializers.get('w1')!.dims[0]!;
  assert.ok(after < before, `${after} channels of ${before}`);
  assert.ok(r.stages[1]!.achieved <= 0.5 + 0.1, `MACs kept ${r.stages[1]!.achieved}`);
});
