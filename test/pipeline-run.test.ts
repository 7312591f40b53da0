/** runPipeline as a library call: one in-memory model, data opened once through the caller, typed events, Ctrl-C. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel, encodeModel, openDataset, runPipeline, validateRecipe, PipelineStopped, getMasks, type PipelineEvent, type PreprocessSpec, type Recipe } from '../src/index.js';
import { OptionError } from '../src/pipeline/options.js';
import { FIXTURE_MODEL } from './cli-helpers.js';

const DEMO = fileURLToPath(new URL('../../data/fashion-mnist-demo', import.meta.url));
const preprocess = { scale: 1 / 255, mean: [0.286], std: [0.353] };

function opener() {
  const opened: string[] = [];
  const openData = async (spec: string, pp: PreprocessSpec) => {
    opened.push(spec);
    return openDataset(spec, pp);
  };
  return { opened, openData };
}

test('prune -> repair -> score over one model: data opened once per spec, roles bound, typed events, the input untouched', async () => {
  const model = loadModel(FIXTURE_MODEL);
  const before = encodeModel(model);
  const recipe = validateRecipe({
    format: 'shears.recipe', version: 1, preprocess,
    steps: [
      { kind: 'prune', mode: 'unstructured', sparsity: 0.5, scope: 'layer' },
      { kind: 'repair', methods: ['stats'], calib: '$calib', calibSize: 32 },
      { kind: 'score', data: '$calib', limit: 64 },
    ],
  });
  const { opened, openData } = opener();
  const events: PipelineEvent[] = [];
  const { model: out, report } = await runPipeline(model, recipe, { openData, data: { calib: `${DEMO}@train` }, onProgress: (e) => events.push(e) });
  assert.deepEqual(opened, [`${DEMO}@train`], 'calibration and scoring share one opened data set');
  assert.deepEqual(encodeModel(model), before, 'the input model is not modified');
  assert.deepEqual(events.filter((e) => e.type === 'start').map((e) => [e.step, e.index]), [['prune', 0], ['repair', 1], ['score', 2]]);
  assert.ok(events.some((e) => e.type === 'info' && e.step === 'repair' && /^repair stats: 22 layers/.test(e.message)));
  assert.ok(events.some((e) => e.type === 'scored' && e.what === 'the dense model' && e.report.accuracy!.top1 > 0.9));
  // The report: the prune fields of `shears prune --json`, then the steps after it.
  const r = report as { mode: { scope: string }; after: { layerSparsity: number }; repair: { methods: string[]; steps: unknown[] }; scores: { after: string; data: string; model: { samples: number; accuracy: { top1: number } } }[] };
  assert.equal(r.mode.scope, 'layer');
  assert.ok(Math.abs(r.after.layerSparsity - 0.5) < 0.01);
  assert.deepEqual(r.repair.methods, ['stats']);
  assert.equal(r.scores.length, 1);
  assert.equal(r.scores[0]!.after, 'repair');
  assert.equal(r.scores[0]!.data, `${DEMO}@train`);
  assert.equal(r.scores[0]!.model.samples, 64);
  assert.ok(r.scores[0]!.model.accuracy.top1 > 0.8, String(r.scores[0]!.model.accuracy.top1));
  assert.equal(getMasks(out).size, 22);
  assert.equal(out.metadata.get('shears.preprocess'), JSON.stringify(preprocess));
  assert.deepEqual(JSON.parse(JSON.stringify(report)), report, 'the report is plain JSON');
});

test('an unbound role is an option error at its step; a repair with nothing to compare with is refused', async () => {
  const model = loadModel(FIXTURE_MODEL);
  const { openData } = opener();
  const recipe: Recipe = { format: 'shears.recipe', version: 1, steps: [{ kind: 'prune', mode: 'unstructured', sparsity: 0.3 }, { kind: 'score', data: '$val' }] };
  await assert.rejects(runPipeline(model, recipe, { openData }), (e: unknown) => {
    assert.ok(e instanceof OptionError);
    assert.equal(e.key, 'score.data');
    assert.match(e.message, /score\.data is the role \$val, which no data set is bound to/);
    return true;
  });
  await assert.rejects(runPipeline(model, { format: 'shears.recipe', version: 1, steps: [{ kind: 'repair', methods: ['none'] }] }, { openData }), /step 1 \(repair\) needs the dense model/);
  await assert.rejects(runPipeline(model, { format: 'shears.recipe', version: 1, steps: [] } as unknown as Recipe, { openData }), /recipe: steps must be a non-empty list/);
});

test('a stop request during fine-tuning: PipelineStopped carries the pruned model, the report so far and the checkpoint', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-pipe-stop-'));
  const ckpt = join(dir, 'out.ckpt.onnx');
  const ac = new AbortController();
  ac.abort();
  const { openData } = opener();
  const recipe: Recipe = {
    format: 'shears.recipe', version: 1, preprocess,
    steps: [
      { kind: 'prune', mode: 'unstructured', sparsity: 0.5, masks: false },
      { kind: 'finetune', epochs: 1, train: `${DEMO}@train`, limit: 64, batch: 32, replicas: 1, threads: 1 },
      { kind: 'quantize', mode: 'fp16' },
    ],
  };
  await assert.rejects(runPipeline(loadModel(FIXTURE_MODEL), recipe, { openData, signal: ac.signal, checkpointOnStop: ckpt, trainProgress: false }), (e: unknown) => {
    assert.ok(e instanceof PipelineStopped, String(e));
    assert.equal(e.stepIndex, 1);
    assert.equal(e.checkpoint, ckpt);
    assert.equal(getMasks(e.model).size, 0, 'the prune step dropped its masks before fine-tuning (masks: false)');
    assert.equal((e.report as { masksStored: boolean }).masksStored, false);
    assert.equal((e.report as { finetune?: unknown }).finetune, undefined);
    return true;
  });
  assert.ok(existsSync(ckpt));
});
