/**
 * `shears quantize MODEL -o OUT [--mode int8|dynamic|fp16|int4] ... [--data SPEC]`: a pipeline of a quantize step
 * (and a score step with --data: the float model and the quantized one), with flags generated from the steps'
 * option tables (pipeline/steps.ts) as their own command spells them.
 */
import { formatSimilarity } from '../metrics/fidelity.js';
import type { Command } from 'commander';
import { preprocessFromFlags } from '../data/preprocess.js';
import { ShearsError } from '../errors.js';
import { saveResult } from './room.js';
import { encodeModel } from '../onnx/codec.js';
import type { Recipe } from '../pipeline/recipe.js';
import type { QuantizeDetails } from '../pipeline/quantize.js';
import { QUANTIZE_OPTIONS, SCORE_OPTIONS, type Step } from '../pipeline/steps.js';
import { optimizedOpTypes } from '../quant/index.js';
import { modelSizes } from '../sparsity/stats.js';
import { addFeedOptions, addFloat32Option, addPreprocessOptions, feedsOf, preprocessFlags, withFloat32 } from './common.js';
import { checkFlagSteps, readModel, runFromCli } from './pipeline.js';
import { GivenFlags, checkOwnUsed, optionsFromFlags, ownContext, ownFlagOfKey, registerOwnFlags } from './step-flags.js';

const QUANTIZE = ownContext('quantize', QUANTIZE_OPTIONS);
/** --data and --limit add a score step (its other options, `shears eval`'s, keep their defaults). */
const SCORE_HELP: Readonly<Record<string, string>> = { data: 'score accuracy/fidelity of the model before and after on this data set', limit: 'score at most N samples' };
const SCORE = ownContext('score', SCORE_OPTIONS.filter((d) => d.key in SCORE_HELP).map((d) => ({ ...d, own: { ...(typeof d.own === 'object' ? d.own : {}), help: SCORE_HELP[d.key]! } })));
const name = ownFlagOfKey([QUANTIZE, SCORE]);

/** The recipe the flags give: quantize (int8 unless --mode says otherwise), then score with --data. */
function recipeFromFlags(cmd: Command): Recipe {
  const flags = new GivenFlags(cmd);
  const steps = [optionsFromFlags(flags, QUANTIZE, { kind: 'quantize', mode: 'int8' })];
  if (flags.has('--data')) steps.push(optionsFromFlags(flags, SCORE, { kind: 'score' }));
  checkOwnUsed(flags, [QUANTIZE, SCORE]);
  checkFlagSteps(steps as unknown as Step[], name);
  const preprocess = preprocessFromFlags(preprocessFlags(cmd.opts()));
  return { format: 'shears.recipe', version: 1, ...(Object.keys(preprocess).length ? { preprocess } : {}), ...feedsOf(cmd), steps: steps as unknown as Step[] };
}

export function registerQuantize(program: Command): void {
  const cmd = program
    .command('quantize')
    .description('Quantize a model: static int8 QDQ (calibrated), dynamic int8, fp16, or weight-only int4 (MatMulNBits)')
    .argument('<model>', 'path to an .onnx file')
    .option('-o, --output <path>', 'where to write the quantized model (required)');
  registerOwnFlags(cmd, QUANTIZE);
  registerOwnFlags(cmd, SCORE);
  cmd.option('--json', 'print one JSON report on stdout');
  addFloat32Option(cmd);
  addFeedOptions(addPreprocessOptions(cmd)).action(async (modelPath: string, o: { output?: string; json?: boolean }, command: Command) => {
    if (o.output === undefined) throw new ShearsError('missing -o/--output: where to write the quantized model');
    const recipe = withFloat32(recipeFromFlags(command), command);
    const run = { ...readModel(modelPath), modelPath, recipe, output: o.output, name, denseName: 'the float model' };
    const r = await runFromCli(run);
    const q = r.report.quantize!;
    const saved = saveResult(r.model, o.output);
    const before = modelSizes(encodeModel(run.model));
    const after = modelSizes(encodeModel(r.model));
    const score = r.report.scores?.[0];
    const result = {
      model: modelPath,
      output: o.output,
      ...(saved.externalFile ? { externalData: saved.externalFile } : {}),
      mode: q.mode,
      size: { before, after, ratio: before.bytes / after.bytes },
      report: q.details,
      ...(q.mode !== 'fp16' ? { onnxruntime: await optimizedOpTypes(r.model) } : {}),
      ...(score?.dense ? {
        before: { accuracy: score.dense.accuracy, samples: score.dense.samples },
        after: { accuracy: score.model.accuracy, fidelity: score.model.fidelity, samples: score.model.samples },
      } : {}),
    };
    if (o.json) {
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      return;
    }
    const lines = [`${q.mode} model written to ${o.output}`, `size: ${before.bytes} -> ${after.bytes} bytes (${(before.bytes / after.bytes).toFixed(2)}x smaller); gzip ${before.gzipBytes} -> ${after.gzipBytes}`];
    lines.push(...detailLines(q.details));
    if (result.onnxruntime) lines.push(`onnxruntime runs: ${Object.entries(result.onnxruntime.opTypes).map(([k, v]) => `${k.replace(/^com\.microsoft\./, '')} ${v}`).join(', ')}`);
    if ('target' in q.details && q.details.target === 'trt') {
      const s24 = q.details.sparsity24 ?? [];
      lines.push(`TensorRT form: symmetric int8 activations, Q/DQ on float weights; ${s24.filter((l) => l.fits && l.violations === 0).length} of ${s24.length} layer weights are 2:4 sparse`);
      lines.push('note: onnxruntime\'s x86 CPU provider does not fuse int8 activations (this model runs in float there)');
    }
    const b = result.before?.accuracy;
    const a = result.after;
    if (b && a?.accuracy) lines.push(`top-1: ${(100 * b.top1).toFixed(2)}% -> ${(100 * a.accuracy.top1).toFixed(2)}%`);
    for (const [n, fi] of Object.entries(a?.fidelity ?? {})) lines.push(`fidelity ${n}: ${formatSimilarity(fi)}${fi.agreement !== undefined ? `, top-1 agreement ${(100 * fi.agreement).toFixed(2)}%` : ''}`);
    process.stdout.write(`${lines.join('\n')}\n`);
  });
}

/** What was quantized (with the weight bits) and what was kept in float. */
function detailLines(d: QuantizeDetails): string[] {
  const lines: string[] = [];
  if ('quantized' in d) lines.push(`quantized: ${Object.entries(d.quantized).map(([k, v]) => `${k} ${v}`).join(', ')}${'weightBits' in d ? ` (${d.weightBits}-bit weights)` : ''}`);
  if ('excluded' in d) for (const e of d.excluded) lines.push(`kept float: ${e.node} (${e.reason})`);
  return lines;
}
