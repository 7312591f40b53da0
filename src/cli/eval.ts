import type { Command } from 'commander';
import { addFeedOptions, addPreprocessOptions, feedsOf, preprocessFlags, progressPrinter } from './common.js';
import { openData, warnIfNearChance } from './data.js';
import { preprocessFor } from '../data/preprocess.js';
import { ShearsError } from '../errors.js';
import type { EvalReport } from '../metrics/evaluate.js';
import { formatSimilarity } from '../metrics/fidelity.js';
import { formatPerplexity } from '../metrics/perplexity.js';
import { loadModel } from '../onnx/io.js';
import { formatMessage } from '../pipeline/events.js';
import { describeOptionError, OptionError } from '../pipeline/options.js';
import type { Recipe } from '../pipeline/recipe.js';
import { runPipeline, type PipelineResult } from '../pipeline/run.js';
import { SCORE_OPTIONS, type Step } from '../pipeline/steps.js';
import { GivenFlags, optionsFromFlags, ownContext, ownFlagOfKey, registerOwnFlags } from './step-flags.js';

function pct(v: number): string {
  return `${(100 * v).toFixed(2)}%`;
}

/** The feeds line of a report on a multi-input or stateful model (none for a single-input model). */
function formatFeeds(r: EvalReport): string[] {
  if (!r.feeds) return [];
  const f = Object.entries(r.feeds.feeds ?? {}).map(([k, v]) => `${k}=${v}`);
  const c = Object.entries(r.feeds.carry ?? {}).map(([o, i]) => `${o} -> ${i}`);
  return [`feeds: ${f.join(', ') || 'none'}${c.length ? `; carried from call to call (one sample per call): ${c.join(', ')}` : ''}`];
}

export function formatEval(r: EvalReport): string {
  const what = r.perplexity ? 'windows' : 'samples';
  const lines = [`data: ${r.dataset}${r.feeds ? ` -> ${r.input.name}` : ''}`, ...formatFeeds(r), `${what}: ${r.samples} in ${r.seconds.toFixed(2)} s (${r.samplesPerSecond.toFixed(r.perplexity ? 1 : 0)} ${what}/s, batch ${r.batchSize})`];
  if (r.accuracy) lines.push(`accuracy (${r.accuracy.output}): top-1 ${pct(r.accuracy.top1)}${r.accuracy.top5 !== undefined ? `  top-5 ${pct(r.accuracy.top5)}` : ''}`);
  if (r.fidelity) {
    lines.push('fidelity vs reference:');
    for (const [name, f] of Object.entries(r.fidelity)) {
      const parts = [];
      if (f.agreement !== undefined) parts.push(`top-1 agreement ${pct(f.agreement)}`);
      if (f.kl !== undefined) parts.push(`KL ${f.kl.toExponential(3)}`);
      parts.push(formatSimilarity(f), `relMSE ${f.relMse.toExponential(3)}`, `max|diff| ${f.maxAbs.toExponential(3)}`);
      lines.push(`  ${name}: ${parts.join('  ')}`);
    }
  }
  if (r.perplexity) {
    lines.push(`${r.referencePerplexity ? "model:     " : ""}${formatPerplexity(r.perplexity)}`);
    if (r.referencePerplexity) lines.push(`reference: ${formatPerplexity(r.referencePerplexity)}`);
    if (r.agreement !== undefined) lines.push(`next-${r.perplexity.unit} agreement with the reference: ${pct(r.agreement)}`);
  }
  if (!r.accuracy && !r.fidelity && !r.perplexity) lines.push('(no labels and no --reference: nothing to score)');
  return lines.join('\n');
}

/**
 * The data spec `eval` opens: with `--metric perplexity` a plain path is token data, and `--context T` is added to
 * a token spec (refused for other data, and `--metric` other than auto/perplexity).
 */
export function tokenSpec(spec: string, metric: string, context: string | undefined): string {
  if (metric !== 'auto' && metric !== 'perplexity') throw new ShearsError(`--metric ${metric}: expected auto or perplexity`);
  let out = spec;
  const tokens = /^tokens:/i.test(spec);
  if (metric === 'perplexity' && !tokens) {
    if (/^[a-z]+:/i.test(spec) && !/^[a-z]:[\\/]/i.test(spec)) throw new ShearsError(`--metric perplexity needs token data: '${spec}' is another kind (give tokens:FILE.bin or tokens:FILE.npy)`);
    out = `tokens:${spec}`;
  }
  if (context !== undefined) {
    if (!/^tokens:/i.test(out)) throw new ShearsError(`--context applies to token data (tokens:FILE), not '${spec}'`);
    const t = Number(context);
    if (!Number.isSafeInteger(t) || t < 1) throw new ShearsError(`--context must be a positive integer, not '${context}'`);
    if (/,(context|T)=/.test(out)) throw new ShearsError(`--context ${context}: the data spec '${spec}' gives the context already`);
    out = `${out},context=${t}`;
  }
  return out;
}

/** The score step's options as `shears eval` spells them (--data, --limit, --batch, --threads, --output). */
const SCORE = ownContext('score', SCORE_OPTIONS);
const name = ownFlagOfKey([SCORE]);

/**
 * `shears eval MODEL --data SPEC`: a one-step recipe (score, without scoring a dense model) with the --reference
 * model as the run's reference, so fidelity is measured against it.
 */
export function registerEval(program: Command): void {
  const cmd = program
    .command('eval')
    .description('Accuracy of a model on a data set, and its fidelity against a reference model')
    .argument('<model>', 'path to an .onnx file');
  registerOwnFlags(cmd, SCORE);
  cmd.options.find((x) => x.long === '--data')!.makeOptionMandatory();
  cmd
    .option('--reference <onnx>', 'reference model (e.g. the original) for fidelity metrics (token data: its perplexity too)')
    .option('--metric <m>', 'auto (accuracy/fidelity; perplexity on token data) or perplexity (reads a plain --data path as token data)', 'auto')
    .option('--context <T>', 'token data: window length, for a model whose sequence dimension is symbolic')
    .option('--json', 'print one JSON object on stdout');
  addFeedOptions(addPreprocessOptions(cmd)).action(async (modelPath: string, o: { reference?: string; json?: boolean; metric: string; context?: string }, command: Command) => {
    const step = optionsFromFlags(new GivenFlags(command), SCORE, { kind: 'score', dense: false });
    step['data'] = tokenSpec(String(step['data']), o.metric, o.context);
    const model = loadModel(modelPath);
    const reference = o.reference !== undefined ? loadModel(o.reference) : undefined;
    const pp = preprocessFor(model, preprocessFlags(command.opts()));
    const recipe: Recipe = { format: 'shears.recipe', version: 1, ...(Object.keys(pp.spec).length ? { preprocess: pp.spec } : {}), ...feedsOf(command), steps: [step as unknown as Step] };
    const progress = progressPrinter('eval');
    const start = performance.now();
    let result: PipelineResult;
    try {
      result = await runPipeline(model, recipe, {
        openData,
        ...(reference ? { reference } : {}),
        onProgress: (e) => {
          if (e.type === 'warning') process.stderr.write(`shears: warning: ${formatMessage(e.message, name)}\n`);
          else if (e.type === 'progress') progress({ done: e.done, total: e.total, seconds: (performance.now() - start) / 1000 });
        },
      });
    } catch (e) {
      if (e instanceof OptionError) throw new ShearsError(describeOptionError(e, name));
      throw e;
    }
    const report = result.report.scores![0]!.model;
    warnIfNearChance(report, 'the model', { mayBeUntrained: true });
    const full = { model: modelPath, ...(reference ? { reference: o.reference } : {}), ...report, preprocessFrom: pp.from };
    process.stdout.write(o.json ? `${JSON.stringify(full)}\n` : `model: ${modelPath}\n${formatEval(report)}\n`);
  });
}
