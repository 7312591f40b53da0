/**
 * The run cache (pipeline/cache.ts): a sweep computes the dense model's statistics once (data sets opened, the
 * activation statistics of activation importance, the repair step's dense score), its variants byte-identical to
 * those built without it; entries of other calibration specs, seeds, sizes or preprocessing are not shared.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createRunCache, encodeModel, loadModel, openDataset, runPipeline, validateRecipe, type PipelineEvent, type PreprocessSpec } from '../src/index.js';
import { sweep, type SweepEvent } from '../src/pipeline/sweep.js';
import { FIXTURE_MODEL } from './cli-helpers.js';

const DEMO = fileURLToPath(new URL('../../data/fashion-mnist-demo', import.meta.url));
const PRE: PreprocessSpec = { scale: 1 / 255, mean: [0.286], std: [0.353] };

/** An openData that counts its calls by spec. */
function opener() {
  const calls: string[] = [];
  return { calls, openData: async (spec: string, pp: PreprocessSpec) => (calls.push(spec), openDataset(spec, pp)) };
}

/** A JSON copy without the timings (seconds, samples per second). */
const untimed = (v: unknown): unknown => JSON.parse(JSON.stringify(v ?? null, (k, x) => (k === 'seconds' || k === 'samplesPerSecond' ? undefined : x)));

const messages = (events: SweepEvent[], re: RegExp) => events.filter((e) => e.type === 'step' && 'message' in e.event && re.test(e.event.message)).length;

async function runSweep(cache: ReturnType<typeof createRunCache> | false, targets: number[]) {
  const { calls, openData } = opener();
  const variants = new Map<string, Uint8Array>();
  const events: SweepEvent[] = [];
  const report = await sweep(loadModel(FIXTURE_MODEL), {
    targets, kind: 'macs', cache,
    prune: { importance: 'activation', calib: `${DEMO}@train`, calibSize: 48, calibSeed: 3, roundTo: 4 },
    repair: { methods: ['lsq'], calib: `${DEMO}@train`, calibSize: 48, calibSeed: 3 },
    preprocess: PRE, batch: 1, threads: 1, warmup: 1, runs: 1, openData,
    onProgress: (e) => events.push(e),
    onVariant: (v) => void variants.set(v.label, encodeModel(v.model)),
  });
  return { calls, variants, events, report };
}

test('sweep: the dense statistics computed once per sweep (counted), the variants byte-identical to a sweep without the cache', async () => {
  const targets = [0.8, 0.6, 0.45];
  const cache = createRunCache();
  const a = await runSweep(cache, targets);
  const b = await runSweep(false, targets);
  assert.deepEqual([...a.variants.keys()], ['macs0.8', 'macs0.6', 'macs0.45']);
  assert.deepEqual([...b.variants.keys()], [...a.variants.keys()]);
  for (const [label, bytes] of a.variants) {
    const other = b.variants.get(label)!;
    assert.equal(bytes.length, other.length, label);
    assert.ok(Buffer.from(bytes).equals(Buffer.from(other)), `${label}: the variant differs with the cache`);
  }
  // the repair step's stage scores (the dense one taken from the cache) as without it
  for (const [k, p] of a.report.points.entries()) {
    assert.deepEqual(untimed(p.pipeline?.repair?.scores), untimed(b.report.points[k]!.pipeline?.repair?.scores), p.label);
    assert.ok(p.pipeline?.repair?.scores?.dense.accuracy !== undefined);
  }
  // the variants differ from each other (the comparison above is not of one model thrice)
  assert.notEqual(a.variants.get('macs0.8')!.length, a.variants.get('macs0.45')!.length);

  // once per sweep: 3 planning runs compute the activation statistics once; 3 repair steps score the dense model once
  assert.deepEqual({ hits: cache.hits.activations, misses: cache.misses.activations }, { hits: 2, misses: 1 });
  assert.deepEqual({ hits: cache.hits.denseScore, misses: cache.misses.denseScore }, { hits: 2, misses: 1 });
  // the calibration data opened once (6 runs: 3 plan, 3 build), not once per run as without the cache
  assert.deepEqual(a.calls, [`${DEMO}@train`]);
  assert.deepEqual(b.calls, Array(6).fill(`${DEMO}@train`));
  assert.deepEqual({ hits: cache.hits.data, misses: cache.misses.data }, { hits: 5, misses: 1 });
  // and said: the statistics computed by the first planning run, taken by the others
  assert.equal(messages(a.events, /activation importance: .*from the cache/), 2);
  assert.equal(messages(a.events, /activation importance: .* s\)$/), 1);
  assert.equal(messages(b.events, /activation importance: .* s\)$/), 3);
  // the dense model evaluated by the repair step once with the cache, thrice without
  assert.equal(messages(a.events, /^evaluating dense \.\.\.$/), 1);
  assert.equal(messages(b.events, /^evaluating dense \.\.\.$/), 3);
});

/** A plan of the structured prune step at MACs `target` with activation importance on `calib`, through `cache`. */
async function plan(cache: ReturnType<typeof createRunCache> | undefined, calib: string, extra: Record<string, unknown> = {}, preprocess: PreprocessSpec = PRE, model = loadModel(FIXTURE_MODEL)) {
  const events: PipelineEvent[] = [];
  const recipe = validateRecipe({
    format: 'shears.recipe', version: 1, preprocess,
    steps: [{ kind: 'prune', mode: 'structured', importance: 'activation', calib, calibSize: 32, calibSeed: 0, roundTo: 4, target: { kind: 'macs', value: 0.5 }, ...extra }],
  });
  const r = await runPipeline(model, recipe, { openData: opener().openData, ...(cache ? { cache } : {}), onProgress: (e) => events.push(e) });
  return JSON.stringify(r.plan);
}

test('run cache: other calibration specs, seeds, sizes, preprocessing and models do not share entries; each plan as without the cache', async () => {
  const cache = createRunCache();
  const dense = loadModel(FIXTURE_MODEL);
  const misses = () => cache.misses.activations;
  const cases: [string, string, Record<string, unknown>, PreprocessSpec][] = [
    ['seed 0', `${DEMO}@train`, {}, PRE],
    ['seed 1', `${DEMO}@train`, { calibSeed: 1 }, PRE],
    ['other spec', `${DEMO}@t10k`, {}, PRE],
    ['other size', `${DEMO}@train`, { calibSize: 24 }, PRE],
    ['other preprocessing', `${DEMO}@train`, {}, { scale: 1 / 255 }],
  ];
  const plans = new Map<string, string>();
  for (const [k, [name, calib, extra, pp]] of cases.entries()) {
    const got = await plan(cache, calib, extra, pp, dense);
    assert.equal(misses(), k + 1, `${name}: computed, not taken from another entry`);
    assert.equal(cache.hits.activations, 0, name);
    // the same plan as a run without the cache
    assert.equal(got, await plan(undefined, calib, extra, pp, dense), name);
    plans.set(name, got);
  }
  // the calibration data differ, so do some plans (the statistics are not one entry served to all)
  assert.ok(new Set(plans.values()).size > 1);
  // the same settings again: taken, not computed; the same plan
  assert.equal(await plan(cache, `${DEMO}@train`, { calibSeed: 1 }, PRE, dense), plans.get('seed 1'));
  assert.equal(cache.hits.activations, 1);
  assert.equal(misses(), cases.length);
  // another model object (even of the same file) is another dense model: not shared
  await plan(cache, `${DEMO}@train`, {}, PRE, loadModel(FIXTURE_MODEL));
  assert.equal(misses(), cases.length + 1);
  // data sets: one entry per spec and preprocessing, per dense model
  assert.equal(cache.misses.data, 4); // train and t10k with PRE, train with scale only; train again for the other model
});

test('run cache: the statistics are of the model the prune step starts from, not of the run\'s dense reference', async () => {
  const cache = createRunCache();
  const dense = loadModel(FIXTURE_MODEL);
  const recipe = validateRecipe({
    format: 'shears.recipe', version: 1, preprocess: PRE,
    steps: [{ kind: 'prune', mode: 'structured', importance: 'activation', calib: `${DEMO}@train`, calibSize: 32, roundTo: 4, target: { kind: 'macs', value: 0.8 } }],
  });
  const first = await runPipeline(dense, recipe, { openData: opener().openData, cache });
  assert.deepEqual({ hits: cache.hits.activations, misses: cache.misses.activations }, { hits: 0, misses: 1 });
  // pruning the pruned model again, the dense model as the run's reference: its own statistics, computed
  const again = await runPipeline(first.model, recipe, { openData: opener().openData, cache, reference: dense });
  assert.deepEqual({ hits: cache.hits.activations, misses: cache.misses.activations }, { hits: 0, misses: 2 });
  const without = await runPipeline(first.model, recipe, { openData: opener().openData, reference: dense });
  assert.ok(Buffer.from(encodeModel(again.model)).equals(Buffer.from(encodeModel(without.model))));
  assert.notEqual(encodeModel(again.model).length, encodeModel(first.model).length);
});
