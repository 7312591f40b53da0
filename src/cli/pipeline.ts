/**
 * Running a pipeline from the command line (`shears prune`, `shears run`, `shears repair`): the library's events
 * on stderr, Ctrl-C during fine-tuning, option errors named as the user wrote them, the one save of the result
 * and the report on stdout.
 */
import { ShearsError } from '../errors.js';
import type { Model } from '../ir/graph.js';
import { readFileSync } from 'node:fs';
import { initializerBytes, loadModel } from '../onnx/io.js';
import { checkRoom, saveResult } from './room.js';
import { describeOptionError, OptionError } from '../pipeline/options.js';
import { formatMessage, type PipelineEvent } from '../pipeline/events.js';
import { frozenReasons, type StructuredSummary, type UnstructuredSummary } from '../pipeline/prune.js';
import type { RepairStageReport } from '../pipeline/repair.js';
import type { FinetuneSummary } from '../pipeline/finetune.js';
import { PipelineStopped, runPipeline, type PipelineReport, type PipelineResult, type RunOptions } from '../pipeline/run.js';
import { checkSteps, type Recipe } from '../pipeline/recipe.js';
import type { FinetuneStep, Step } from '../pipeline/steps.js';
import type { PreprocessSpec } from '../data/preprocess.js';
import { openData, warnIfNearChance } from './data.js';
import { defaultCheckpoint, interruptible, shellQuote } from './interrupt.js';
import { writeFileAtomic } from '../fs/files.js';
import { renderEvidenceHtml } from '../report/html.js';
import { formatEvidence } from './report.js';

/** Checks steps built from flags (combinations, order), naming options by `name` in the one-line error. */
export function checkFlagSteps(steps: readonly Step[], name: (key: string) => string): void {
  try {
    checkSteps(steps);
  } catch (e) {
    if (e instanceof OptionError) throw new ShearsError(describeOptionError(e, name));
    throw e;
  }
}

/** A model and its file's bytes (the sizes the report gives for the input). */
export function readModel(path: string): { model: Model; inputBytes: Uint8Array } {
  const model = loadModel(path);
  const b = readFileSync(path);
  return { model, inputBytes: new Uint8Array(b.buffer, b.byteOffset, b.byteLength) };
}

/** Prints a pipeline event on stderr; option keys in messages are written by `name`. */
export function printEvent(e: PipelineEvent, name: (key: string) => string): void {
  if (e.type === 'info') process.stderr.write(`${formatMessage(e.message, name)}\n`);
  else if (e.type === 'warning') process.stderr.write(`shears: warning: ${formatMessage(e.message, name)}\n`);
  else if (e.type === 'progress') {
    if (process.stderr.isTTY) process.stderr.write(`\r${e.message}${e.done >= e.total ? '\n' : ''}`);
  } else if (e.type === 'scored') warnIfNearChance(e.report, e.what);
}

export interface CliRun {
  model: Model;
  modelPath: string;
  /** The model file as read (sizes in the report). */
  inputBytes: Uint8Array;
  recipe: Recipe;
  output: string;
  /** How option keys read in messages: flags for `shears prune`, recipe keys for `shears run`. */
  name: (key: string) => string;
  /** How errors about a step are located (`shears run`: the recipe file and step). */
  locate?: (e: OptionError) => string;
  data?: Record<string, string>;
  reference?: Model;
  /** Options of the run passed through (shears finetune: --bn-reference, the near-chance look before training). */
  pass?: Pick<RunOptions, 'bnReference' | 'beforeTraining'>;
  /** What the dense model is called in warnings (shears quantize: 'the float model'). */
  denseName?: string;
  /** Where fine-tuning checkpoints when stopped (default OUT.ckpt.onnx), and what to print then (default: see runFromCli). */
  checkpoint?: string;
  stopped?: (e: PipelineStopped, checkpoint: string) => { what: string; resume: string };
}

/**
 * Runs the recipe; on Ctrl-C while fine-tuning, writes the model as it was before the fine-tuning step to the
 * output and prints the `shears finetune ... --resume` command that continues (then exits 130).
 */
export async function runFromCli(run: CliRun): Promise<PipelineResult> {
  let training = false;
  const ckpt = run.checkpoint ?? defaultCheckpoint(run.output);
  try {
    return await interruptible(
      (signal) => runPipeline(run.model, run.recipe, {
        openData,
        signal,
        checkpointOnStop: ckpt,
        inputBytes: run.inputBytes,
        // Before minutes of training: the output's device must have room for the result.
        beforeFinetune: (m: Model) => checkRoom(run.output, initializerBytes(m), 'the fine-tuned model'),
        ...(run.data ? { data: run.data } : {}),
        ...(run.reference ? { reference: run.reference } : {}),
        ...run.pass,
        onProgress: (e) => {
          if (e.type === 'start') training = e.step === 'finetune';
          printEvent(e.type === 'scored' && run.denseName ? { ...e, what: run.denseName } : e, run.name);
        },
      }),
      (stopped) => {
        const e = stopped as PipelineStopped;
        if (run.stopped) return run.stopped(e, ckpt);
        saveResult(e.model, run.output);
        const rest = run.recipe.steps.slice(e.stepIndex + 1).some((s) => s.kind === 'quantize') ? ', not quantized' : '';
        const step = run.recipe.steps[e.stepIndex] as FinetuneStep;
        const what = `'${run.output}' holds the pruned model, not fine-tuned${rest}`;
        if (step.iterative) return { what, resume: 'shears: iterative pruning keeps no checkpoint: run the command again to start over' };
        return {
          what,
          resume: 'shears: to resume the fine-tuning from the pruned model on disk (then run the steps after it, such as --quantize, with their own commands):\n' +
            `  ${resumeFinetune(step, run, ckpt)}`,
        };
      },
      () => training,
    );
  } catch (e) {
    if (e instanceof OptionError) throw new ShearsError(run.locate ? run.locate(e) : describeOptionError(e, run.name));
    throw e;
  }
}

/**
 * `shears finetune` continuing an interrupted fine-tuning step (same data, schedule and batch). It writes beside
 * the pruned model, which is its input (shears never writes over an input).
 */
function resumeFinetune(s: FinetuneStep, run: CliRun, ckpt: string): string {
  const spec = (v: string) => (v.startsWith('$') ? run.data?.[v.slice(1)] ?? v : v);
  const args = ['finetune', run.output, '--train', spec(s.train)];
  if (s.val !== undefined) args.push('--val', spec(s.val));
  args.push('--epochs', String(s.epochs));
  const same = [[s.lr, '--lr'], [s.batch, '--batch'], [s.limit, '--limit'], [s.replicas, '--replicas'], [s.threads, '--threads']] as const;
  for (const [v, flag] of same) if (v !== undefined) args.push(flag, String(v));
  // The original model: the teacher of kd, on by default after a prune step (re-inserted BatchNorm is in the
  // checkpoint already).
  if (s.kd ?? run.recipe.steps.some((p) => p.kind === 'prune')) args.push('--teacher', run.modelPath);
  args.push(...preprocessArgs(run.recipe.preprocess ?? {}));
  args.push('--resume', ckpt, '-o', `${run.output.replace(/\.onnx$/i, '')}.finetuned.onnx`);
  return `shears ${args.map(shellQuote).join(' ')}`;
}

/** The preprocessing flags that give `spec`. */
function preprocessArgs(spec: PreprocessSpec): string[] {
  const out: string[] = [];
  if (spec.scale !== undefined) {
    const inv = 1 / spec.scale;
    out.push('--scale', Number.isInteger(inv) && inv > 1 ? `1/${inv}` : String(spec.scale));
  }
  if (spec.mean) out.push('--mean', spec.mean.join(','));
  if (spec.std) out.push('--std', spec.std.join(','));
  if (spec.resize !== undefined) out.push('--resize', typeof spec.resize === 'number' ? String(spec.resize) : spec.resize.join('x'));
  if (spec.crop) out.push('--crop', spec.crop.join('x'));
  if (spec.layout) out.push('--layout', spec.layout);
  if (spec.color) out.push('--color', spec.color);
  return out;
}

/** Saves the result (atomically) and prints the report: one JSON object with `json`, else text. */
export function saveAndReport(result: PipelineResult, run: CliRun, json: boolean): void {
  const saved = saveResult(result.model, run.output);
  const r = result.report;
  if (json) {
    const all = { model: run.modelPath, output: run.output, ...(saved.externalFile ? { externalData: saved.externalFile } : {}), ...r };
    process.stdout.write(`${JSON.stringify(all, null, 2)}\n`);
    return;
  }
  const lines: string[] = [];
  if ('masksStored' in r) lines.push(...formatUnstructured(r));
  else if ('macsRatio' in r) lines.push(...formatStructured(r, run));
  if (r.repair) lines.push(formatStage(r.repair));
  if (r.finetune) lines.push(...formatFinetune(r.finetune));
  for (const s of r.scores ?? []) lines.push(formatScore(s));
  if (r.evidence) lines.push(formatEvidence(r.evidence));
  if (!('masksStored' in r) && !('macsRatio' in r)) lines.push(`wrote ${run.output}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** `--report-html FILE`: the report step's evidence as an HTML page (a recipe without a report step is an error before any work). */
export function reportHtml(recipe: Recipe, path: string | undefined): ((result: PipelineResult) => void) | undefined {
  if (path === undefined) return undefined;
  if (recipe.steps.at(-1)?.kind !== 'report') throw new ShearsError('--report-html needs a report step (the last step of the recipe)');
  return (result) => {
    if (result.report.evidence) writeFileAtomic(path, renderEvidenceHtml(result.report.evidence));
  };
}

function formatUnstructured(r: PipelineReport & UnstructuredSummary): string[] {
  const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
  const lines = [`${'layer weight'.padEnd(36)} ${'op'.padEnd(14)} ${'params'.padStart(9)} ${'nonzero'.padStart(9)} ${'sparsity'.padStart(8)}`];
  for (const l of r.layers) {
    lines.push(`${l.name.slice(0, 36).padEnd(36)} ${l.op.slice(0, 14).padEnd(14)} ${String(l.params).padStart(9)} ${String(l.nonzero).padStart(9)} ${pct(l.sparsity).padStart(8)}${l.pruned ? '' : '  (not pruned)'}`);
  }
  lines.push(`layer weights: ${r.after.layerNonzero} of ${r.after.layerParams} nonzero, sparsity ${pct(r.before.layerSparsity)} -> ${pct(r.after.layerSparsity)}`);
  lines.push(`all parameters: ${r.after.nonzero} of ${r.after.params} nonzero, sparsity ${pct(r.after.sparsity)}`);
  lines.push(`file: ${r.before.fileBytes} -> ${r.after.fileBytes} bytes; gzip: ${r.before.gzipBytes} -> ${r.after.gzipBytes} bytes${r.masksStored ? ' (masks stored in the file)' : ''}`);
  for (const s of r.skipped) lines.push(`skipped ${s.name}: ${s.reason}`);
  lines.push('note: unstructured sparsity saves storage (compressed size), not CPU time: onnxruntime has no sparse kernels');
  return lines;
}

function formatStructured(r: PipelineReport & StructuredSummary, run: CliRun): string[] {
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const n = (x: number) => x.toLocaleString('en-US');
  const lines = [
    `${run.modelPath} -> ${run.output} (${r.seconds.toFixed(2)} s)`,
    `MACs   ${n(r.before.macs)} -> ${n(r.after.macs)} (${pct(r.macsRatio)})`,
    `params ${n(r.before.params)} -> ${n(r.after.params)} (${pct(r.paramsRatio)})`,
    `channels removed: ${r.removedChannels} of ${r.prunableChannels} prunable in ${r.groups} groups${r.removedBlocks.length ? `; residual blocks removed: ${r.removedBlocks.join(', ')}` : ''}`,
  ];
  if (r.latency) {
    const L = r.latency;
    const landed = L.landing ? `, measured ${pct(L.landing.measured)} (landing check${L.landing.attempts.length > 1 ? `, ${L.landing.attempts.length} plans` : ''})` : '';
    lines.push(`latency ${L.dense.toFixed(2)} ms (measured) -> ${L.predicted.toFixed(2)} ms (predicted, ${pct(L.ratio)}${landed}, batch ${L.batch}, ${L.threads} thread${L.threads === 1 ? '' : 's'}); planned in ${L.planSeconds.toFixed(1)} s, ${L.measured} timing graphs measured${L.cache ? ` (table ${L.cache})` : ''}`);
  }
  for (const l of r.layers) lines.push(`  ${l.node} (${l.opType}): ${l.before} -> ${l.after}`);
  const reasons = frozenReasons(r);
  if (reasons.length) {
    lines.push('frozen (kept whole):');
    for (const [k, count] of reasons) lines.push(`  ${count} x ${k}`);
  }
  return lines;
}

/** The finetune step's lines: epochs, time, validation accuracy, and the distillation and BatchNorm choices. */
function formatFinetune(f: FinetuneSummary): string[] {
  if (f.lm) {
    const v = f.lm.valAfter ? `: val bits per ${f.lm.valAfter.unit} ${f.lm.valBefore?.bitsPerToken.toFixed(4) ?? '-'} -> ${f.lm.valAfter.bitsPerToken.toFixed(4)}` : '';
    return [`fine-tuned ${f.lm.steps} steps of ${f.lm.batch} windows of ${f.lm.context} tokens in ${f.seconds.toFixed(1)} s (${f.lm.secondsPerStep.toFixed(2)} s/step)${v}; ${f.choices.kd ? 'distilled from the dense model' : 'no distillation'}${f.choices.kdNote}`];
  }
  const score = f.valTop1 !== undefined ? `: val top-1 ${f.valTop1Before !== undefined ? `${pct2(f.valTop1Before)} -> ` : ''}${pct2(f.valTop1)}`
    : f.valRelMse !== undefined ? `: val relMSE vs the dense model ${f.valRelMseBefore!.toExponential(3)} -> ${f.valRelMse.toExponential(3)}${f.detector?.keptBefore ? ' (worse: the model before fine-tuning was kept)' : ''}` : '';
  const kd = f.detectLoss ? `detection loss ${f.detectLoss.first.toFixed(4)} -> ${f.detectLoss.last.toFixed(4)}, no distillation` : `${f.choices.kd ? 'distilled from the dense model' : 'no distillation'}${f.choices.kdNote}`;
  return [`fine-tuned ${f.epochs} epoch(s) on ${f.trainSamples} samples in ${f.seconds.toFixed(1)} s${score}; ${kd}`, f.choices.bnLine];
}

const pct2 = (v: number | undefined) => (v === undefined ? '-' : `${(100 * v).toFixed(2)}%`);

/** The repair step's lines: what each method did, and the scores of the stages. */
export function formatStage(r: RepairStageReport): string {
  const lines: string[] = [];
  for (const s of r.steps) lines.push(`repair ${s.method}: ${s.layers.length} layers, ${s.seconds.toFixed(1)} s, ${s.calibSamples} calibration samples`);
  if (r.scores) {
    lines.push(`scores on ${r.scores.data}:`);
    for (const k of ['dense', 'pruned', 'repaired'] as const) {
      const e = r.scores[k];
      if (!e) continue;
      const f = Object.values(e.fidelity ?? {})[0];
      if (e.perplexity) {
        lines.push(`  ${k.padEnd(8)} bits per ${e.perplexity.unit} ${e.perplexity.bitsPerToken.toFixed(4)}  perplexity ${e.perplexity.perplexity.toFixed(3)}  next-${e.perplexity.unit} agreement ${pct2(e.agreement).padStart(7)}`);
        continue;
      }
      lines.push(`  ${k.padEnd(8)} top-1 ${pct2(e.accuracy?.top1).padStart(7)}  agreement ${pct2(f?.agreement).padStart(7)}  relMSE ${f ? f.relMse.toExponential(2) : '-'}`);
    }
  }
  return lines.join('\n');
}

function formatScore(s: NonNullable<PipelineReport['scores']>[number]): string {
  const f = Object.values(s.model.fidelity ?? {})[0];
  const p = s.model.perplexity;
  if (p) return `score after ${s.after} on ${s.data}: bits per ${p.unit} ${p.bitsPerToken.toFixed(4)} (dense ${s.dense?.perplexity?.bitsPerToken.toFixed(4) ?? '-'})  perplexity ${p.perplexity.toFixed(3)}  next-${p.unit} agreement ${pct2(s.model.agreement)}`;
  return `score after ${s.after} on ${s.data}: top-1 ${pct2(s.model.accuracy?.top1)} (dense ${pct2(s.dense?.accuracy?.top1)})  agreement ${pct2(f?.agreement)}  relMSE ${f ? f.relMse.toExponential(2) : '-'}`;
}
