/**
 * `shears run RECIPE MODEL`: `shears prune --save-recipe` replays byte for byte, the example recipes of the README
 * quick start run, and recipe problems are user errors naming the file, step and key. Also the prune help text,
 * generated from the step option tables.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FIXTURE_MODEL, isUserError, shears } from './cli-helpers.js';
import { parseRecipe } from '../src/pipeline/recipe.js';

const DEMO = fileURLToPath(new URL('../../data/fashion-mnist-demo', import.meta.url));
const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url));
const NORM = ['--scale', '--mean', '0.2860', '--std', '0.3530'];
const dir = mkdtempSync(join(tmpdir(), 'shears-run-'));

function replays(name: string, prune: string[], recipeFile: string) {
  const a = join(dir, `${name}-a.onnx`), b = join(dir, `${name}-b.onnx`), recipe = join(dir, recipeFile);
  const r1 = shears(['prune', FIXTURE_MODEL, '-o', a, ...prune, '--save-recipe', recipe, '--json'], { timeoutMs: 300_000 });
  assert.equal(r1.code, 0, r1.stderr);
  const r2 = shears(['run', recipe, FIXTURE_MODEL, '-o', b, '--json'], { timeoutMs: 300_000 });
  assert.equal(r2.code, 0, r2.stderr);
  assert.ok(readFileSync(b).equals(readFileSync(a)), `${name}: the replayed model differs`);
  const [j1, j2] = [JSON.parse(r1.stdout), JSON.parse(r2.stdout)];
  assert.deepEqual(j2.repair.scores.repaired.accuracy, j1.repair.scores.repaired.accuracy);
  return { recipe: parseRecipe(readFileSync(recipe, 'utf8'), recipe), report: j1 };
}

test('prune --structured --repair lsq --save-recipe (YAML): shears run replays it byte for byte', () => {
  const { recipe, report } = replays('s', ['--structured', '--target-macs', '0.5', '--round-to', '8', '--repair', 'lsq', '--calib', `${DEMO}@train`,
    '--calib-size', '64', '--data', DEMO, '--data-limit', '100', ...NORM], 'structured.yaml');
  assert.ok(Math.abs(report.macsRatio - 0.5) <= 0.02);
  // What it ran, data as the spec strings given, defaults left to the steps.
  assert.deepEqual(recipe.steps, [
    // --calib serves the prune step too: activation importance, the default with calibration data
    { kind: 'prune', mode: 'structured', roundTo: 8, target: { kind: 'macs', value: 0.5 }, calib: `${DEMO}@train`, calibSize: 64 },
    { kind: 'repair', methods: ['lsq'], calib: `${DEMO}@train`, calibSize: 64, data: DEMO, dataLimit: 100 },
  ]);
  assert.deepEqual(recipe.preprocess, { scale: 1 / 255, mean: [0.286], std: [0.353] });
});

test('prune --sparsity --repair obs --save-recipe (JSON): shears run replays it byte for byte', () => {
  const { recipe } = replays('u', ['--sparsity', '0.7', '--repair', 'obs', '--calib', `${DEMO}@train`, '--calib-size', '64', ...NORM], 'unstructured.json');
  assert.deepEqual(recipe.steps.map((s) => s.kind), ['prune', 'repair']);
});

for (const [file, check] of [
  ['structured-50-lsq.yaml', (j: Record<string, any>) => assert.ok(Math.abs(j.macsRatio - 0.5) <= 0.02 && j.scores[0].model.accuracy.top1 > 0.85, JSON.stringify(j.scores[0].model.accuracy))],
  ['unstructured-70-obs.yaml', (j: Record<string, any>) => assert.ok(Math.abs(j.after.layerSparsity - 0.7) < 0.01 && j.scores[0].model.accuracy.top1 > 0.9, JSON.stringify(j.scores[0].model.accuracy))],
] as const) {
  test(`the example recipe ${file} runs on the bundled model`, () => {
    const r = shears(['run', join(EXAMPLES, file), FIXTURE_MODEL, '-o', join(dir, `${file}.onnx`), '--data', `calib=${DEMO}@train`, `data=${DEMO}`, '--json'], { timeoutMs: 300_000 });
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.deepEqual(j.repair.steps.map((s: { calibSamples: number }) => s.calibSamples), [512]);
    assert.equal(j.scores[0].data, DEMO);
    assert.equal(j.scores[0].dense.accuracy.correct1, 940);
    check(j);
  });
}

test('shears run: recipe problems and unbound roles are user errors naming the file, step and key', () => {
  const out = join(dir, 'x.onnx');
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'format: shears.recipe\nversion: 1\nsteps:\n  - {kind: prune, mode: unstructured, sparsity: 0.5}\n  - {kind: repair, methods: [lsq], calib: $calib, calibsize: 64}\n');
  const r1 = shears(['run', bad, FIXTURE_MODEL, '-o', out]);
  assert.ok(isUserError(r1), r1.stderr);
  assert.match(r1.stderr, /shears: error: .*bad\.yaml: step 2 \(repair\): calibsize is not an option of repair/);
  const r2 = shears(['run', join(EXAMPLES, 'unstructured-70-obs.yaml'), FIXTURE_MODEL, '-o', out]);
  assert.equal(r2.code, 2, r2.stderr);
  assert.match(r2.stderr, /shears: error: .*unstructured-70-obs\.yaml: step 2 \(repair\): calib is the role \$calib, which no data set is bound to \(bind it with --data ROLE=SPEC\)/);
  const r3 = shears(['run', join(EXAMPLES, 'unstructured-70-obs.yaml'), FIXTURE_MODEL, '-o', out, '--data', 'calib']);
  assert.ok(isUserError(r3), r3.stderr);
  const r4 = shears(['run', join(dir, 'missing.yaml'), FIXTURE_MODEL, '-o', out]);
  assert.ok(isUserError(r4), r4.stderr);
  const r5 = shears(['prune', FIXTURE_MODEL, '-o', out, '--sparsity', '0.5', '--save-recipe', join(dir, 'r.txt')]);
  assert.ok(isUserError(r5), r5.stderr);
});

test('shears run --dense: a recipe that starts from a pruned model repairs it against the original', () => {
  const pruned = join(dir, 'p.onnx');
  assert.equal(shears(['prune', FIXTURE_MODEL, '-o', pruned, '--sparsity', '0.5']).code, 0);
  const recipe = join(dir, 'repair.json');
  writeFileSync(recipe, JSON.stringify({ format: 'shears.recipe', version: 1, preprocess: { scale: 1 / 255, mean: [0.286], std: [0.353] }, steps: [{ kind: 'repair', methods: ['stats'], calib: '$calib', calibSize: 32 }] }));
  const args = ['run', recipe, pruned, '-o', join(dir, 'r.onnx'), '--data', `calib=${DEMO}@train`, '--json'];
  const r1 = shears(args);
  assert.ok(isUserError(r1), r1.stderr);
  assert.match(r1.stderr, /step 1 \(repair\) needs the dense model to compare with.*--dense/);
  const r2 = shears([...args, '--dense', FIXTURE_MODEL]);
  assert.equal(r2.code, 0, r2.stderr);
  const s = JSON.parse(r2.stdout).repair.scores;
  assert.ok(s.repaired.fidelity.logits.relMse < s.pruned.fidelity.logits.relMse);
});

test('prune --help: each step\'s own defaults, and the steps a shared flag serves', () => {
  const r = shears(['prune', '--help']);
  assert.equal(r.code, 0);
  const help = r.stdout.replace(/\s+/g, ' ');
  assert.match(help, /--calib-size <n> \[unstructured, N:M\] calibration samples, drawn with a seed \(default 128\); \[structured, repair\] calibration samples, drawn with a seed \(default 512\); \[quantize\] calibration samples for int8 \(default 256\)/);
  assert.match(help, /--calib <spec> \[unstructured, N:M, repair\] calibration data set; \[structured\] calibration data set \(activation importance, depth ranking by influence or loss; "random" gives none\); \[quantize\] calibration data set for int8/);
  assert.match(help, /--importance <kind> \[structured\] .*activation \(Wanda-style.*\(default: activation when calibration data is given \(--calib\), else l2\)/);
  assert.match(help, /--threads <n> \[unstructured, N:M\] onnxruntime intra-op threads; \[structured\] onnxruntime threads for latency measurements and Taylor gradients/);
  assert.match(help, /--finetune-threads <n> \[finetune\] fine-tuning: onnxruntime intra-op threads, shared out over the replicas \(default: every core\)/);
  assert.match(help, /--round-to <n> \[structured\] .*\(default 8\)/);
  assert.match(help, /--save-recipe <file>/);
});

test('prune: a step flag no step of the run takes is a user error saying what it needs', () => {
  const out = join(dir, 'y.onnx');
  for (const [args, re] of [
    [['--sparsity', '0.5', '--importance', 'l1'], /--importance needs --structured/],
    [['--sparsity', '0.5', '--finetune-lr', '0.1'], /--finetune-lr needs --finetune-epochs/],
    [['--sparsity', '0.5', '--calib', DEMO], /--calib needs --sparsity with --method wanda\|sparsegpt or --pattern with --method wanda\|sparsegpt or --structured or --repair or --quantize int8/],
    [['--structured', '--ratio', '0.3', '--batch', '4'], /--batch applies to --target-latency only/],
    [['--sparsity', '0.5', '--ratio', '0.3'], /--ratio needs --structured/],
    [['--sparsity', '0.5', '--repair', 'lsq', '--calib', DEMO, '--calib-size', '0'], /--calib-size must be a positive integer, not '0'/],
  ] as const) {
    const r = shears(['prune', FIXTURE_MODEL, '-o', out, ...args]);
    assert.ok(isUserError(r), `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
  }
});
