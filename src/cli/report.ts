/**
 * `shears report BASE.onnx [VARIANT.onnx ...] [--data SPEC] [--html OUT.html] [--json]`: the evidence report
 * (report/evidence.ts) as text, JSON and a self-contained HTML page with plots.
 */
import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { writeFileAtomic } from '../fs/files.js';
import { basename } from 'node:path';
import { openDataset } from '../data/spec.js';
import { isTokenData } from '../data/tokens.js';
import { normalises, preprocessFor } from '../data/preprocess.js';
import { detectorDefaults } from './data.js';
import { evalTask } from './eval.js';
import { ShearsError } from '../errors.js';
import type { Given } from '../pipeline/options.js';
import { loadModel } from '../onnx/io.js';
import { gatherEvidence, type EvidenceOptions, type EvidenceReport } from '../report/evidence.js';
import { renderEvidenceHtml } from '../report/html.js';
import { evidencePareto } from '../report/pareto.js';
import { evidenceSettings } from '../pipeline/report.js';
import { REPORT_OPTIONS } from '../pipeline/steps.js';
import { parseInputShapes } from './args.js';
import { addFeedOptions, addPreprocessOptions, positiveInt, preprocessFlags, progressPrinter } from './common.js';
import { feedsFromArgs, hasFeeds, planInputs } from '../data/feeds.js';
import { GivenFlags, optionsFromFlags, ownContext, registerOwnFlags } from './step-flags.js';

/** The report step's options as `shears report` spells them (--data, --runs, ...). */
const REPORT = ownContext('report', REPORT_OPTIONS);

function labelsFor(paths: string[], given: string | undefined): string[] {
  if (given !== undefined) {
    const l = given.split(',').map((s) => s.trim());
    if (l.length !== paths.length || l.some((s) => s === '')) throw new ShearsError(`--labels needs ${paths.length} non-empty names, one per model`);
    return l;
  }
  const base = paths.map((p) => basename(p).replace(/\.onnx$/i, ''));
  return base.map((b, i) => (base.indexOf(b) !== i || base.lastIndexOf(b) !== i ? `${b} (${i + 1})` : b));
}

/** The text table of a detector report: mAP and detection fidelity instead of top-1 and agreement. */
function formatDetectionEvidence(r: EvidenceReport): string {
  const pct = (v: number) => `${(100 * v).toFixed(2)}%`;
  const f4 = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '-' : v.toFixed(4));
  const lines = [`latency: batch ${r.settings.batch}, threads ${r.settings.threads ?? 'default'}, ${r.settings.runs} interleaved runs${r.settings.dataset ? `; data: ${r.settings.dataset} (${r.settings.samples} images)` : ''}`];
  const w = Math.max(5, ...r.models.map((m) => m.label.length));
  lines.push(`${'model'.padEnd(w)} ${'mAP50'.padStart(7)} ${'mAP50-95'.padStart(8)} ${'fid.rec'.padStart(7)} ${'fid.IoU'.padStart(7)} ${'median ms'.padStart(10)} ${'speedup'.padStart(8)} ${'MACs'.padStart(8)} ${'nonzero'.padStart(8)}`);
  for (const [k, m] of r.models.entries()) {
    const d = m.detection;
    lines.push(`${m.label.padEnd(w)} ${f4(d?.map50).padStart(7)} ${f4(d?.map5095).padStart(8)} ${(k === 0 ? 'base' : f4(d?.fidelity?.recall)).padStart(7)} ${(k === 0 ? 'base' : f4(d?.fidelity?.meanIou)).padStart(7)} ` +
      `${m.latency.median.toFixed(3).padStart(10)} ${`${m.vsBase.speedup.toFixed(2)}x`.padStart(8)} ${pct(m.vsBase.macs).padStart(8)} ${pct(m.vsBase.nonzeroParams).padStart(8)}`);
  }
  lines.push('(mAP: COCO definition, NMS conf 0.001 IoU 0.7 max 300; fid.rec / fid.IoU: recall of the base model\'s detections (score >= 0.25, same class, IoU >= 0.5) and the mean IoU of the matches; MACs and nonzero parameters relative to the first model)');
  return lines.join('\n');
}

export function formatEvidence(r: EvidenceReport): string {
  if (r.settings.task === 'detect') return formatDetectionEvidence(r);
  const pct = (v: number) => `${(100 * v).toFixed(2)}%`;
  const lines = [`latency: batch ${r.settings.batch}, threads ${r.settings.threads ?? 'default'}, ${r.settings.runs} interleaved runs${r.settings.dataset ? `; data: ${r.settings.dataset} (${r.settings.samples} samples)` : ''}`];
  const w = Math.max(5, ...r.models.map((m) => m.label.length));
  const lm = r.models.find((m) => m.perplexity)?.perplexity;
  lines.push(`${'model'.padEnd(w)} ${(lm ? `bits/${lm.unit === 'byte' ? 'B' : 'tok'}` : 'top-1').padStart(8)} ${'agree'.padStart(8)} ${'median ms'.padStart(10)} ${'speedup'.padStart(8)} ${'MACs'.padStart(8)} ${'nonzero'.padStart(8)} ${'gzip'.padStart(8)}`);
  for (const [k, m] of r.models.entries()) {
    // class scores: top-1 agreement; one value per sample in [0, 1]: decisions at 0.5
    const first = m.fidelity ? Object.values(m.fidelity)[0] : undefined;
    const agree = m.agreement ?? first?.agreement ?? first?.scalar?.decisionAgreement;
    lines.push(`${m.label.padEnd(w)} ${(m.perplexity ? m.perplexity.bitsPerToken.toFixed(4) : m.accuracy ? pct(m.accuracy.top1) : '-').padStart(8)} ${(k === 0 ? 'base' : agree !== undefined ? pct(agree) : '-').padStart(8)} ` +
      `${m.latency.median.toFixed(3).padStart(10)} ${`${m.vsBase.speedup.toFixed(2)}x`.padStart(8)} ${pct(m.vsBase.macs).padStart(8)} ${pct(m.vsBase.nonzeroParams).padStart(8)} ${pct(m.vsBase.gzipBytes).padStart(8)}`);
  }
  lines.push('(MACs, nonzero parameters and gzip size relative to the first model; speedup = its median latency / this one)');
  if (lm) lines.push(`(bits/${lm.unit === 'byte' ? 'B' : 'tok'}: next-token bits per ${lm.unit} on the token data; agree: positions predicting the same next ${lm.unit} as the base)`);
  if (r.models.some((m) => m.fidelity && Object.values(m.fidelity)[0]?.scalar)) lines.push('(agree: for an output of one value per sample, the fraction of decisions at 0.5 that match the base; see --json for its correlation and relative error)');
  return lines.join('\n');
}

export function registerReport(program: Command): void {
  const cmd = program
    .command('report')
    .description('Evidence: size, parameters, MACs, latency (interleaved), accuracy and fidelity of a model and its variants, as text, JSON and an HTML page with plots')
    .argument('<models...>', 'the base model, then the variants to compare with it (.onnx files)')
    .option('--labels <list>', 'names for the models, comma list (default: file names)');
  registerOwnFlags(cmd, REPORT);
  cmd
    .option('--input-shape <spec...>', 'static input shape NAME=1x3x224x224 (repeatable)')
    .option('--html <path>', 'write the report as a self-contained HTML page with plots')
    .option('--task <task>', 'auto, classify or detect (detect: mAP and detection fidelity; the HTML page draws validation images with every model\'s boxes; auto: detect on yolo:/coco: data or a base model shaped like a detector)', 'auto')
    .option('--draw <n>', 'detect with --html: validation images drawn with the boxes of every model (default 4)')
    .option('--json', 'print the report as one JSON object');
  addFeedOptions(addPreprocessOptions(cmd)).action(async (paths: string[], o: { labels?: string; inputShape?: string[]; html?: string; json?: boolean; feed?: string[]; carry?: string[]; task: string; draw?: string }, command: Command) => {
    const step = optionsFromFlags(new GivenFlags(command), REPORT) as Given<typeof REPORT_OPTIONS>;
    const labels = labelsFor(paths, o.labels);
    const entries = paths.map((path, i) => {
      const model = loadModel(path);
      const b = readFileSync(path);
      return { label: labels[i]!, path, model, bytes: new Uint8Array(b.buffer, b.byteOffset, b.byteLength) };
    });
    const base = entries[0]!.model;
    const opts: EvidenceOptions = evidenceSettings(step);
    const spec = step.data;
    const feeds = feedsFromArgs(o.feed, o.carry);
    const task = spec !== undefined ? evalTask(o.task, spec, base) : { task: 'classify' as const };
    if (spec === undefined && o.task === 'detect') throw new ShearsError('--task detect needs --data (a yolo:/coco: data set for mAP, or images for detection fidelity)');
    if (task.task === 'detect') {
      if (hasFeeds(feeds)) throw new ShearsError('--feed/--carry do not apply to detection (a detector has one image input)');
      opts.task = 'detect';
      if (o.html !== undefined) opts.drawImages = o.draw !== undefined ? positiveInt('--draw')(o.draw) : 4;
      if (task.why) process.stderr.write(`task: detect (${task.why})\n`);
    } else if (o.draw !== undefined) throw new ShearsError('--draw applies to --task detect');
    if (spec !== undefined) {
      // every model's inputs are accounted for before any measuring (multi-input and stateful models)
      for (const e of entries) planInputs(e.model, feeds, `'${e.label}'`);
      // Each model reads the data with its own stored preprocessing, unless flags set it for all.
      opts.data = (model) => {
        const pp = preprocessFor(model, preprocessFlags(command.opts()));
        const given = task.task === 'detect' ? detectorDefaults(spec, pp.spec, model, true) : pp.spec;
        const ds = openDataset(spec, given);
        if (task.task === 'detect') {
          if (!normalises(given) && !isTokenData(ds)) process.stderr.write(`shears: warning: ${entries.find((e) => e.model === model)?.label ?? ''}: ${pp.warning}\n`);
          return ds;
        }
        // (token ids feed the model as they are: no normalisation to warn about)
        if (pp.warning && !isTokenData(ds)) process.stderr.write(`shears: warning: ${entries.find((e) => e.model === model)?.label ?? ''}: ${pp.warning}\n`);
        return hasFeeds(feeds) ? ds.withFeeds(feeds, { open: (s) => openDataset(s), inputs: model.graph.inputs }) : ds;
      };
      opts.onProgress = (label, p) => progressPrinter(`eval ${label}`)(p);
    }
    if (hasFeeds(feeds)) opts.feeds = feeds;
    if (o.inputShape) opts.inputShapes = parseInputShapes(o.inputShape, base);
    const report = await gatherEvidence(entries, opts);
    // several variants: the Pareto front of quality against latency (marked on the HTML chart, listed in the text)
    if (entries.length >= 3) {
      const pareto = evidencePareto(report);
      if (pareto) report.pareto = pareto;
    }
    if (o.html !== undefined) writeFileAtomic(o.html, renderEvidenceHtml(report));
    const front = report.pareto ? `Pareto front (${report.pareto.metric} against median latency), fastest first: ${report.pareto.front.join(', ')}\n` : '';
    process.stdout.write(o.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatEvidence(report)}\n${front}${o.html !== undefined ? `wrote ${o.html}\n` : ''}`);
  });
}
