import type { Command } from 'commander';
import { addFeedOptions, addPreprocessOptions, feedsOf, preprocessFlags, progressPrinter } from './common.js';
import { openData, warnIfNearChance } from './data.js';
import { preprocessFor, type PreprocessSpec } from '../data/preprocess.js';
import { parseDataSpec } from '../data/spec.js';
import type { Model } from '../ir/graph.js';
import { detectorShape, evaluateDetection, type DetectionEvalReport } from '../metrics/detection-eval.js';
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

interface EvalFlags {
  reference?: string;
  json?: boolean;
  metric: string;
  context?: string;
  task: string;
  conf?: string;
  iou?: string;
  maxDet?: string;
  fidelityConf?: string;
}

/** The task `eval` runs: as given, or auto (detect for detection data or a model shaped like a detector). */
export function evalTask(given: string, dataSpec: string, model: Model): { task: 'classify' | 'detect'; why?: string } {
  const t = given.toLowerCase();
  if (t === 'detect' || t === 'classify') return { task: t };
  if (t !== 'auto') throw new ShearsError(`--task ${given}: expected auto, classify or detect`);
  let kind: string | undefined;
  try {
    kind = parseDataSpec(dataSpec).kind;
  } catch {
    kind = undefined;
  }
  if (kind === 'yolo' || kind === 'coco') return { task: 'detect', why: `${kind}: data` };
  if (kind === 'tokens') return { task: 'classify' };
  const d = detectorShape(model);
  if (d) {
    const shape = model.graph.outputs.find((x) => x.name === d.output)?.type?.shape ?? [];
    const what = d.format.kind === 'yolo' ? `a YOLOv8-style head, ${d.format.nc} classes` : 'an end-to-end detector';
    return { task: 'detect', why: `output '${d.output}' [${shape.join(', ')}] looks like ${what}` };
  }
  return { task: 'classify' };
}

function num(flag: string, v: string | undefined, lo: number, hi: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < lo || n > hi) throw new ShearsError(`${flag} must be a number in [${lo}, ${hi}], not '${v}'`);
  return n;
}

const f4 = (v: number) => (Number.isNaN(v) ? 'n/a' : v.toFixed(4));

/** The text report of a detector evaluation. */
export function formatDetectionEval(r: DetectionEvalReport): string {
  const lines = [
    `data: ${r.dataset}`,
    `images: ${r.samples} in ${r.seconds.toFixed(2)} s (${r.samplesPerSecond.toFixed(1)} images/s, batch ${r.batchSize})`,
    `output: ${r.output} (${r.format.kind === 'yolo' ? `YOLOv8 head, ${r.format.nc} classes, ${r.format.anchors} anchors; NMS conf ${r.nms.conf}, IoU ${r.nms.iou}, max ${r.nms.maxDet}` : `end-to-end, ${r.format.maxDet} detections; conf ${r.nms.conf}`})`,
  ];
  const m = r.map;
  if (m) {
    lines.push(`objects: ${m.instances} in ${m.images} images; ${m.predictions} detections scored`);
    lines.push(`mAP50 ${f4(m.map50)}  mAP50-95 ${f4(m.map5095)}  mAP75 ${f4(m.map75)}  (COCO: pycocotools' matching and 101-point AP)`);
    lines.push(`Ultralytics val: mAP50 ${f4(m.ultralytics.map50)}  mAP50-95 ${f4(m.ultralytics.map5095)}  P ${f4(m.precision)}  R ${f4(m.recall)}`);
    if (r.referenceMap) lines.push(`reference: mAP50 ${f4(r.referenceMap.map50)}  mAP50-95 ${f4(r.referenceMap.map5095)}`);
    const w = Math.max(5, ...m.perClass.map((c) => c.name.length));
    lines.push(`  ${'class'.padEnd(w)}  images  objects       P       R   AP50  AP50-95`);
    for (const c of m.perClass) {
      lines.push(`  ${c.name.padEnd(w)}  ${String(c.images).padStart(6)}  ${String(c.instances).padStart(7)}  ${c.precision.toFixed(4)}  ${c.recall.toFixed(4)}  ${c.ap50.toFixed(4)}  ${c.ap.toFixed(4)}`);
    }
  }
  const f = r.fidelity;
  if (f) {
    lines.push(`detection fidelity vs reference (score >= ${f.conf}, same class, IoU >= ${f.iou}): recall ${f4(f.recall)} of ${f.referenceDetections} reference detections, precision ${f4(f.precision)} of ${f.modelDetections}, mean IoU ${f4(f.meanIou)}, score correlation ${f4(f.scoreCorrelation)}`);
  }
  if (!m && !f) lines.push('(no detection labels and no --reference: nothing to score; give yolo:DATA.yaml or coco:ANN.json,images=DIR data, or --reference)');
  return lines.join('\n');
}

async function evalDetect(modelPath: string, model: Model, reference: Model | undefined, spec: string, given: PreprocessSpec, step: Record<string, unknown>, o: EvalFlags, command: Command): Promise<void> {
  if (o.metric !== 'auto') throw new ShearsError(`--metric ${o.metric} does not apply to detection`);
  if (feedsOf(command).feeds || feedsOf(command).carry) throw new ShearsError('--feed/--carry do not apply to detection (a detector has one image input)');
  const ds = await openData(spec, given, model);
  const progress = progressPrinter('eval');
  const start = performance.now();
  const conf = num('--conf', o.conf, 0, 1);
  const iou = num('--iou', o.iou, 0, 1);
  const maxDet = num('--max-det', o.maxDet, 1, 1e6);
  const fidelityConf = num('--fidelity-conf', o.fidelityConf, 0, 1);
  const report = await evaluateDetection(model, ds, {
    ...(reference ? { reference } : {}),
    ...(step['limit'] !== undefined ? { limit: Number(step['limit']) } : {}),
    ...(step['batch'] !== undefined ? { batchSize: Number(step['batch']) } : {}),
    ...(step['threads'] !== undefined ? { threads: Number(step['threads']) } : {}),
    ...(step['output'] !== undefined ? { output: String(step['output']) } : {}),
    ...(conf !== undefined ? { conf } : {}),
    ...(iou !== undefined ? { iou } : {}),
    ...(maxDet !== undefined ? { maxDet: Math.round(maxDet) } : {}),
    ...(fidelityConf !== undefined ? { fidelityConf } : {}),
    onProgress: (e) => progress({ done: e.done, total: e.total, seconds: (performance.now() - start) / 1000 }),
  });
  const full = { model: modelPath, task: 'detect', ...(reference ? { reference: o.reference } : {}), ...report };
  process.stdout.write(o.json ? `${JSON.stringify(full)}\n` : `model: ${modelPath}\n${formatDetectionEval(report)}\n`);
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
    .option('--task <task>', 'auto, classify or detect (auto: detect on yolo:/coco: data or for a model whose output looks like a YOLO head)', 'auto')
    .option('--conf <c>', 'detect: confidence threshold for mAP (default 0.001, as Ultralytics val)')
    .option('--iou <t>', 'detect: NMS IoU threshold (default 0.7)')
    .option('--max-det <n>', 'detect: detections kept per image (default 300)')
    .option('--fidelity-conf <c>', 'detect with --reference: detections compared above this score (default 0.25)')
    .option('--reference <onnx>', 'reference model (e.g. the original) for fidelity metrics (token data: its perplexity too)')
    .option('--metric <m>', 'auto (accuracy/fidelity; perplexity on token data) or perplexity (reads a plain --data path as token data)', 'auto')
    .option('--context <T>', 'token data: window length, for a model whose sequence dimension is symbolic')
    .option('--json', 'print one JSON object on stdout');
  addFeedOptions(addPreprocessOptions(cmd)).action(async (modelPath: string, o: EvalFlags, command: Command) => {
    const step = optionsFromFlags(new GivenFlags(command), SCORE, { kind: 'score', dense: false });
    step['data'] = tokenSpec(String(step['data']), o.metric, o.context);
    const model = loadModel(modelPath);
    const reference = o.reference !== undefined ? loadModel(o.reference) : undefined;
    const pp = preprocessFor(model, preprocessFlags(command.opts()));
    const task = evalTask(o.task, String(step['data']), model);
    if (task.task === 'detect') {
      if (task.why) process.stderr.write(`task: detect (${task.why})\n`);
      await evalDetect(modelPath, model, reference, String(step['data']), pp.spec, step, o, command);
      return;
    }
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
