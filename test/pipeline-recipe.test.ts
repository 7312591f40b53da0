/** Recipes: the schema's checks, with errors that name the file, the step and the key; JSON and YAML both ways. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ShearsError } from '../src/errors.js';
import { describeOptionError, OptionError } from '../src/pipeline/options.js';
import { checkSteps, formatRecipe, parseRecipe, validateRecipe, type Recipe } from '../src/pipeline/recipe.js';
import type { Step } from '../src/pipeline/steps.js';

const examples = fileURLToPath(new URL('../../examples/', import.meta.url));

function recipe(...steps: unknown[]): unknown {
  return { format: 'shears.recipe', version: 1, steps };
}

function fails(v: unknown, re: RegExp, name = 'r.yaml'): void {
  assert.throws(() => validateRecipe(v, name), (e: unknown) => {
    assert.ok(e instanceof ShearsError, String(e));
    assert.match((e as Error).message, re);
    return true;
  });
}

const prune = { kind: 'prune', mode: 'unstructured', sparsity: 0.5 };

test('the example recipes are valid, with defaults left to the steps and data given as roles', () => {
  for (const f of ['structured-50-lsq.yaml', 'unstructured-70-obs.yaml']) {
    const r = parseRecipe(readFileSync(`${examples}${f}`, 'utf8'), f);
    assert.deepEqual(r.steps.map((s) => s.kind), ['prune', 'repair', 'score']);
    assert.equal(r.preprocess?.scale, 1 / 255);
    assert.deepEqual(r.preprocess?.mean, [0.286]);
  }
  const s = parseRecipe(readFileSync(`${examples}structured-50-lsq.yaml`, 'utf8'), 'x.yaml').steps[0]!;
  assert.deepEqual(s, { kind: 'prune', mode: 'structured', target: { kind: 'macs', value: 0.5 }, calib: '$calib' });
});

test('unknown keys, wrong types and missing keys name the file, the step and the key', () => {
  fails(recipe(prune, { kind: 'repair', methods: ['lsq'], calib: 'x', calibsize: 64 }), /^r\.yaml: step 2 \(repair\): calibsize is not an option of repair \(options: methods, calib, calibSize/);
  fails(recipe(prune, { kind: 'repair', methods: ['lsq'], calib: 'x', calibSize: 'many' }), /^r\.yaml: step 2 \(repair\): calibSize must be a positive integer, not 'many'$/);
  fails(recipe(prune, { kind: 'repair', methods: ['lsq'], calib: 'x', calibSize: 1.5 }), /step 2 \(repair\): calibSize must be a positive integer, not 1\.5/);
  fails(recipe(prune, { kind: 'repair', methods: 'lsq', calib: 'x' }), /step 2 \(repair\): methods must be a list of none, stats, lsq, obs, wanda, not 'lsq'/);
  fails(recipe({ kind: 'prune', mode: 'unstructured' }), /^r\.yaml: step 1 \(prune\): sparsity is missing$/);
  fails(recipe({ kind: 'prune', mode: 'unstructured', sparsity: 1 }), /step 1 \(prune\): sparsity must be a number in \[0, 1\), not 1$/);
  fails(recipe({ kind: 'prune', mode: 'sideways', sparsity: 0.5 }), /step 1 \(prune\): mode must be one of unstructured, nm, structured/);
  fails(recipe({ kind: 'trim' }), /^r\.yaml: step 1 \(trim\): step\.kind must be one of prune, repair, score, finetune, quantize/);
  fails(recipe({ kind: 'prune', mode: 'nm', pattern: '4:2' }), /step 1 \(prune\): pattern must be N:M with 0 < N <= M/);
  fails(recipe({ kind: 'prune', mode: 'nm', pattern: '2:4', layerSparsity: { w: 0.5 } }), /layerSparsity is not an option of prune \(mode nm\)/);
  fails(recipe({ kind: 'prune', mode: 'structured', target: { kind: 'macs', value: 1.5 } }), /step 1 \(prune\): target\.value must be a number in \(0, 1\], not 1\.5/);
  fails(recipe({ kind: 'prune', mode: 'structured', target: { kind: 'flops', value: 0.5 } }), /target\.kind must be one of ratio, macs, params, latency, plan/);
  fails(recipe({ kind: 'prune', mode: 'structured', target: { kind: 'ratio', value: 0.5, batch: 4 } }), /target\.batch is not a field of a ratio target/);
  fails(recipe({ kind: 'prune', mode: 'structured', target: { kind: 'plan', plan: { removed: [] } } }), /target\.plan must be a structured plan/);
  const ft = { kind: 'finetune', epochs: 1, train: 'idx:d@train' };
  fails(recipe(prune, { ...ft, iterative: { kind: 'gmp' } }), /step 2 \(finetune\): iterative\.sparsity is missing: a gmp schedule needs it/);
  fails(recipe(prune, { ...ft, iterative: { kind: 'macs', target: 0.5, rewindEpoch: 1 } }), /step 2 \(finetune\): iterative\.rewindEpoch is not a field of a macs schedule/);
  fails(recipe(prune, { ...ft, iterative: { kind: 'lottery', sparsity: 0.5, steps: 0 } }), /iterative\.steps must be a positive integer, not 0/);
  validateRecipe(recipe(prune, { ...ft, iterative: { kind: 'lottery', sparsity: 0.5, steps: 2, rewindEpoch: 0.5 } }));
  fails(recipe(prune, { kind: 'score', data: '$not a role' }), /step 2 \(score\): data must be a data set spec/);
  fails({ format: 'shears.recipe', version: 2, steps: [prune] }, /^r\.yaml: version must be 1/);
  fails({ format: 'shears.recipe', version: 1, steps: [] }, /steps must be a non-empty list/);
  fails({ format: 'shears.recipe', version: 1, steps: [prune], extra: 1 }, /unknown key 'extra'/);
  fails({ format: 'shears.recipe', version: 1, preprocess: { scale: 'a lot' }, steps: [prune] }, /^r\.yaml: preprocess: scale must be a number or a fraction/);
});

test('steps in the wrong order, twice, or with options that need others are refused at their step', () => {
  fails(recipe({ kind: 'quantize', mode: 'dynamic' }, prune), /^r\.yaml: step 2 \(prune\): prune must come before quantize \(step 1\): the order is prune, repair, finetune, quantize$/);
  fails(recipe(prune, { kind: 'finetune', epochs: 1, train: 't' }, { kind: 'repair', methods: ['stats'], calib: 'c' }), /step 3 \(repair\): repair must come before finetune \(step 2\)/);
  fails(recipe(prune, prune), /step 2 \(prune\): prune comes twice/);
  fails(recipe(prune, { kind: 'repair', methods: ['lsq'] }), /step 2 \(repair\): methods needs calibration data: calib$/);
  fails(recipe(prune, { kind: 'quantize', mode: 'dynamic', calibSize: 64 }), /step 2 \(quantize\): calibSize applies to mode int8 only/);
  fails(recipe(prune, { kind: 'quantize', mode: 'int8' }), /step 2 \(quantize\): mode int8 needs calibration data: calib/);
  fails(recipe({ kind: 'prune', mode: 'structured', importance: 'taylor', target: { kind: 'ratio', value: 0.3 } }), /step 1 \(prune\): importance taylor needs labelled data: taylorData/);
  fails(recipe({ kind: 'prune', mode: 'structured' }), /step 1 \(prune\): target is missing: give a target or removeBlocks/);
  // Score steps go anywhere.
  validateRecipe(recipe({ kind: 'score', data: '$data' }, prune, { kind: 'score', data: '$data' }, { kind: 'quantize', mode: 'fp16' }, { kind: 'score', data: 'x' }));
});

test('the same checks name command-line flags when the CLI asks', () => {
  const steps = [prune, { kind: 'repair', methods: ['lsq'] }] as unknown as Step[];
  assert.throws(() => checkSteps(steps), (e: unknown) => {
    assert.ok(e instanceof OptionError);
    assert.equal(e.key, 'repair.methods');
    assert.equal(e.message, 'repair.methods needs calibration data: repair.calib');
    const flags: Record<string, string> = { 'repair.methods': '--repair', 'repair.calib': '--calib' };
    assert.equal(describeOptionError(e, (k) => flags[k] ?? k), '--repair needs calibration data: --calib');
    return true;
  });
});

test('JSON and YAML recipes read back what was written; file errors name the file', () => {
  const r = validateRecipe(recipe(
    { kind: 'prune', mode: 'structured', target: { kind: 'latency', value: 0.7, batch: 8 }, roundTo: 8, inputShape: ['input=1x1x28x28'] },
    { kind: 'repair', methods: ['stats', 'lsq'], calib: '$calib', damp: 0.05 },
    { kind: 'finetune', epochs: 2, train: 'idx:data@train', kd: true },
    { kind: 'quantize', mode: 'int8', calib: 'random', calibrator: 'entropy' },
  )) as Recipe;
  r.preprocess = { scale: 1 / 255, mean: [0.286], std: [0.353] };
  for (const name of ['r.json', 'r.yaml', 'r.yml']) assert.deepEqual(parseRecipe(formatRecipe(r, name), name), r);
  assert.match(formatRecipe(r, 'r.yaml'), /^format: shears\.recipe\n/);
  assert.throws(() => parseRecipe('{"format": ', 'bad.json'), /^ShearsError: bad\.json: not JSON: /);
  assert.throws(() => parseRecipe('steps: [a\n  b: c', 'bad.yaml'), /bad\.yaml: not YAML: /);
  assert.throws(() => parseRecipe('format: shears.recipe\nformat: x\n', 'dup.yaml'), /dup\.yaml: not YAML: .*unique/i);
});

test('the options of shears finetune and shears quantize are recipe keys too, checked the same way', () => {
  const ft = { kind: 'finetune', epochs: 2, train: '$train', optimizer: 'adamw', weightDecay: 0.05, schedule: 'onecycle', augment: 'crop:4,flip', bn: 'fresh', seed: 3 };
  const q = { kind: 'quantize', mode: 'int4', blockSize: 64, exclude: 'head' };
  const r = validateRecipe(recipe(prune, ft, q), 'r.yaml');
  assert.deepEqual(r.steps[1], ft);
  assert.deepEqual(r.steps[2], q);
  fails(recipe({ ...ft, momentum: 0.5 }), /^r\.yaml: step 1 \(finetune\): momentum applies to optimizer sgd only$/);
  fails(recipe({ ...ft, schedule: 'weird' }), /step 1 \(finetune\): schedule must be cosine, cosine:W, onecycle, step:N or constant, not 'weird'/);
  fails(recipe({ ...ft, iterative: { kind: 'gmp', sparsity: 0.5 }, checkpoint: 'c.onnx' }), /step 1 \(finetune\): checkpoint is not supported with iterative pruning \(iterative\)/);
  fails(recipe({ ...q, blockSize: 48 }), /step 1 \(quantize\): blockSize must be one of 16, 32, 64, 128, not 48/);
  fails(recipe({ kind: 'quantize', mode: 'dynamic', blockSize: 32 }), /step 1 \(quantize\): blockSize applies to mode int4 only/);
  // momentum goes with the default optimizer (sgd)
  assert.equal((validateRecipe(recipe({ kind: 'finetune', epochs: 1, train: '$train', momentum: 0.8 })).steps[0] as { momentum: number }).momentum, 0.8);
});
