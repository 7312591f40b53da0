/**
 * The report step: the dense and the final model measured side by side (report/evidence.ts) as plain JSON in the
 * pipeline report, `--report-html` of `shears run` and `shears prune` drawing it, and where a report step may go.
 * Also the score step with `shears eval`'s options (eval is a one-step score recipe).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FIXTURE_MODEL, isUserError, shears } from './cli-helpers.js';
import { loadModel, openDataset, runPipeline, validateRecipe, type PreprocessSpec } from '../src/index.js';

const DEMO = fileURLToPath(new URL('../../data/fashion-mnist-demo', import.meta.url));
const NORM = ['--scale', '--mean', '0.2860', '--std', '0.3530'];
const dir = mkdtempSync(join(tmpdir(), 'shears-report-step-'));

test('shears run: prune + report on data gives evidence of both models in the JSON, and --report-html writes the page', () => {
  const recipe = join(dir, 'r.json');
  writeFileSync(recipe, JSON.stringify({
    format: 'shears.recipe', version: 1, preprocess: { scale: '1/255', mean: [0.286], std: [0.353] },
    steps: [{ kind: 'prune', mode: 'unstructured', sparsity: 0.5 }, { kind: 'report', data: '$eval', dataLimit: 64, warmup: 1, runs: 3 }],
  }));
  const out = join(dir, 'r.onnx'), html = join(dir, 'r.html');
  const r = shears(['run', recipe, FIXTURE_MODEL, '-o', out, '--data', `eval=${DEMO}`, '--report-html', html, '--json'], { timeoutMs: 300_000 });
  assert.equal(r.code, 0, r.stderr);
  const ev = JSON.parse(r.stdout).evidence;
  assert.deepEqual(ev.models.map((m: { label: string }) => m.label), ['dense', 'after prune']);
  assert.deepEqual({ runs: ev.settings.runs, warmup: ev.settings.warmup, batch: ev.settings.batch, samples: ev.settings.samples }, { runs: 3, warmup: 1, batch: 1, samples: 64 });
  const [dense, pruned] = ev.models;
  // The dense model's size is its file's; the pruned one has about half its layer weights nonzero.
  assert.equal(dense.fileBytes, readFileSync(FIXTURE_MODEL).length);
  assert.equal(pruned.params, dense.params);
  assert.ok(pruned.nonzeroParams < 0.6 * dense.nonzeroParams, `${pruned.nonzeroParams} of ${dense.nonzeroParams}`);
  assert.ok(dense.accuracy.top1 > 0.5, `dense top-1 ${dense.accuracy.top1}`);
  assert.equal(pruned.accuracy.samples, 64);
  assert.ok(Object.values(pruned.fidelity as Record<string, { agreement: number }>)[0]!.agreement > 0);
  assert.equal(pruned.vsBase.top1Delta, pruned.accuracy.top1 - dense.accuracy.top1);
  const page = readFileSync(html, 'utf8');
  assert.match(page, /^<!DOCTYPE html>/i);
  assert.ok(page.includes('after prune'));
});

test('shears prune --report-html: a report step last, scored on --data; without a report step --report-html is a user error', () => {
  const out = join(dir, 'p.onnx'), html = join(dir, 'p.html'), saved = join(dir, 'p.yaml');
  const r = shears(['prune', FIXTURE_MODEL, '-o', out, '--sparsity', '0.3', '--data', DEMO, '--data-limit', '32', ...NORM, '--report-html', html, '--save-recipe', saved]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(existsSync(html));
  assert.match(r.stdout, /^dense .*base/m);
  assert.match(r.stdout, /^after repair /m);
  assert.match(readFileSync(saved, 'utf8'), /kind: report\n\s+data: .*fashion-mnist-demo/);

  const recipe = join(dir, 'no-report.json');
  writeFileSync(recipe, JSON.stringify({ format: 'shears.recipe', version: 1, steps: [{ kind: 'prune', mode: 'unstructured', sparsity: 0.5 }] }));
  const bad = shears(['run', recipe, FIXTURE_MODEL, '-o', join(dir, 'x.onnx'), '--report-html', join(dir, 'x.html')]);
  assert.ok(isUserError(bad), bad.stderr);
  assert.match(bad.stderr, /--report-html needs a report step/);
  assert.ok(!existsSync(join(dir, 'x.onnx')));
  const ext = shears(['run', recipe, FIXTURE_MODEL, '-o', join(dir, 'y.onnx'), '--report-html', join(dir, 'y.txt')]);
  assert.ok(isUserError(ext), ext.stderr);
});

test('recipes: a report step must be the last step; its options are checked', () => {
  const steps = (...s: unknown[]) => ({ format: 'shears.recipe', version: 1, steps: s });
  const prune = { kind: 'prune', mode: 'unstructured', sparsity: 0.5 };
  assert.deepEqual(validateRecipe(steps(prune, { kind: 'report', runs: 3 })).steps[1], { kind: 'report', runs: 3 });
  assert.throws(() => validateRecipe(steps({ kind: 'report' }, prune), 'r.json'), /^ShearsError: r\.json: step 1 \(report\): report must be the last step/);
  assert.throws(() => validateRecipe(steps(prune, { kind: 'report', runs: 0 }), 'r.json'), /step 2 \(report\): runs must be a positive integer, not 0/);
  assert.throws(() => validateRecipe(steps(prune, { kind: 'report', html: 'x.html' }), 'r.json'), /step 2 \(report\): html is not an option of report/);
});

test('score step with eval\'s options: no dense score with dense: false, fidelity only against a model that differs', async () => {
  const model = loadModel(FIXTURE_MODEL);
  const openData = async (spec: string, pp: PreprocessSpec) => openDataset(spec, pp);
  const recipe = validateRecipe({
    format: 'shears.recipe', version: 1, preprocess: { scale: 1 / 255, mean: [0.286], std: [0.353] },
    steps: [{ kind: 'score', data: DEMO, limit: 40, batch: 20, threads: 1, output: 'logits', dense: false }],
  });
  const alone = (await runPipeline(model, recipe, { openData })).report.scores![0]!;
  assert.equal(alone.dense, undefined);
  assert.equal(alone.model.fidelity, undefined, 'the input model is not compared with itself');
  assert.deepEqual([alone.model.samples, alone.model.batchSize, alone.model.accuracy!.output], [40, 20, 'logits']);
  const vs = (await runPipeline(model, recipe, { openData, reference: model })).report.scores![0]!;
  assert.equal(vs.model.fidelity!['logits']!.agreement, 1);
  assert.equal(vs.model.accuracy!.correct1, alone.model.accuracy!.correct1);
});
