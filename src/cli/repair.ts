/**
 * `shears repair PRUNED --dense DENSE --calib SPEC -o OUT --method stats|lsq|obs|wanda`, and the `--repair` step
 * of `shears prune` (options added through addRepairStepOptions, run by repairStage). Wiring only: the work is in
 * src/repair and src/metrics.
 */
import type { Command } from 'commander';
import { openData, warnIfNearChance } from './data.js';
import { preprocessFor, writePreprocess, readPreprocess, type PreprocessSpec } from '../data/preprocess.js';
import type { Dataset } from '../data/dataset.js';
import { ShearsError } from '../errors.js';
import type { Model } from '../ir/graph.js';
import { evaluate, type EvalReport } from '../metrics/evaluate.js';
import { loadModel, saveModel } from '../onnx/io.js';
import { repair, REPAIR_METHODS, type RepairMethod, type RepairReport } from '../repair/repair.js';
import { parsePattern } from '../sparsity/nm.js';
import { addPreprocessOptions, positiveInt, preprocessFlags } from './eval.js';

/** Parses '--repair' values: one method or a comma list applied in order (e.g. 'stats,lsq'). */
export function parseRepairMethods(v: string): RepairMethod[] {
  const list = v.split(',').map((s) => s.trim().toLowerCase());
  for (const m of list) if (!(REPAIR_METHODS as string[]).includes(m)) throw new ShearsError(`--repair: unknown method '${m}' (${REPAIR_METHODS.join(', ')})`);
  return list as RepairMethod[];
}

function parseDamp(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  const d = Number(v);
  if (!Number.isFinite(d) || d < 0) throw new ShearsError(`--repair-damp must be a non-negative number, not '${String(v)}'`);
  return d;
}

function hasOption(cmd: Command, long: string): boolean {
  return cmd.options.some((o) => o.long === long);
}

/** Adds --repair and its data options to a command (skipping options another step already added). */
export function addRepairStepOptions(cmd: Command, opts: { repairFlag?: boolean } = {}): void {
  if (opts.repairFlag !== false) cmd.option('--repair <methods>', `training-free repair after pruning: ${REPAIR_METHODS.join(' | ')} (or a comma list, applied in order)`);
  if (!hasOption(cmd, '--calib')) cmd.option('--calib <spec>', 'calibration data set (for the repair)');
  if (!hasOption(cmd, '--calib-size')) cmd.option('--calib-size <n>', 'calibration samples, drawn with a seed (default 512 for the repair)', positiveInt('--calib-size'));
  cmd
    .option('--calib-seed <n>', 'seed for drawing the calibration samples (default 0)', positiveIntOrZero('--calib-seed'))
    .option('--repair-damp <d>', 'damping of the repair normal equations, fraction of the mean Hessian diagonal (default 0.01)')
    .option('--data <spec>', 'evaluation data: report accuracy/fidelity of each stage (dense, pruned, repaired)')
    .option('--data-limit <n>', 'evaluate at most N samples of --data', positiveInt('--data-limit'));
  if (!hasOption(cmd, '--scale')) addPreprocessOptions(cmd);
}

function positiveIntOrZero(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new ShearsError(`${flag} must be a non-negative integer, not '${v}'`);
    return n;
  };
}

/** Fails fast on bad --repair arguments (before the command prunes anything). */
export function checkRepairStep(o: Record<string, unknown>): void {
  if (o['repair'] === undefined) {
    for (const f of ['calibSeed', 'repairDamp']) if (o[f] !== undefined) throw new ShearsError(`--${f.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} needs --repair`);
    return;
  }
  const methods = parseRepairMethods(o['repair'] as string);
  parseDamp(o['repairDamp']);
  if (methods.some((m) => m !== 'none') && typeof o['calib'] !== 'string') throw new ShearsError('--repair needs calibration data: --calib SPEC');
}

export interface StageScores {
  data: string;
  dense: EvalReport;
  pruned: EvalReport;
  repaired?: EvalReport;
}

export interface RepairStageReport {
  methods: RepairMethod[];
  steps: RepairReport[];
  seconds: number;
  /** Accuracy/fidelity per stage, on --data (or on the calibration samples when no --data is given). */
  scores?: StageScores;
}

async function dataFor(model: Model, o: Record<string, unknown>, spec: string): Promise<Dataset> {
  const pp = preprocessFor(model, preprocessFlags(o));
  if (pp.warning) process.stderr.write(`shears: warning: ${pp.warning}\n`);
  return openData(spec, pp.spec);
}

async function score(model: Model, dense: Model, ds: Dataset, limit: number | undefined, label: string): Promise<EvalReport> {
  process.stderr.write(`evaluating ${label} ...\n`);
  const r = await evaluate(model, ds, { reference: dense, batchSize: 128, ...(limit ? { limit } : {}) });
  const acc = r.accuracy ? `top-1 ${(100 * r.accuracy.top1).toFixed(2)}%` : '';
  const fid = Object.entries(r.fidelity ?? {}).map(([k, f]) => `${k}: ${f.agreement !== undefined ? `agreement ${(100 * f.agreement).toFixed(2)}% ` : ''}relMSE ${f.relMse.toExponential(2)}`).join('; ');
  process.stderr.write(`  ${label}: ${[acc, fid].filter(Boolean).join('  ')}\n`);
  return r;
}

/**
 * The --repair step: repairs `pruned` (in place: its graph and metadata are replaced) against the dense model at
 * `densePath`, and scores the stages when --data (or --calib) is given. Returns undefined when no --repair and
 * no --data was given.
 */
export async function repairStage(densePath: string, pruned: Model, o: Record<string, unknown>, hints: { pattern?: string } = {}): Promise<RepairStageReport | undefined> {
  if (o['repair'] === undefined && o['data'] === undefined) return undefined;
  const t0 = performance.now();
  const methods = o['repair'] !== undefined ? parseRepairMethods(o['repair'] as string) : ['none' as const];
  const dense = loadModel(densePath);
  const report: RepairStageReport = { methods, steps: [], seconds: 0 };
  let calib: Dataset | undefined;
  let pp: PreprocessSpec | undefined;
  if (typeof o['calib'] === 'string' && methods.some((m) => m !== 'none')) {
    const d = await dataFor(dense, o, o['calib']);
    calib = d.sample(typeof o['calibSize'] === 'number' ? o['calibSize'] : 512, typeof o['calibSeed'] === 'number' ? o['calibSeed'] : 0);
    pp = d.preprocess;
  }
  const evalSpec = typeof o['data'] === 'string' ? o['data'] : undefined;
  const limit = typeof o['dataLimit'] === 'number' ? o['dataLimit'] : undefined;
  let evalData: Dataset | undefined;
  if (evalSpec) evalData = await dataFor(dense, o, evalSpec);
  else if (calib) evalData = calib;
  let scores: StageScores | undefined;
  if (evalData) {
    const denseScore = await score(dense, dense, evalData, limit, 'dense');
    warnIfNearChance(denseScore, 'the dense model');
    scores = { data: evalSpec ?? `calibration samples (${calib!.description})`, dense: denseScore, pruned: await score(pruned, dense, evalData, limit, 'pruned') };
  }
  let current = pruned;
  const pattern = typeof hints.pattern === 'string' ? parsePattern(hints.pattern) : undefined;
  const damp = parseDamp(o['repairDamp']);
  for (const method of methods) {
    if (method === 'none') continue;
    const { model, report: r } = await repair(dense, current, calib!, {
      method,
      ...(pattern ? { pattern } : {}),
      ...(damp !== undefined ? { damp } : {}),
      onProgress: (p) => {
        if (process.stderr.isTTY) process.stderr.write(`\rrepair ${method}: ${p.done}/${p.total} layers (${p.seconds.toFixed(1)} s)`);
      },
    });
    process.stderr.write(`${process.stderr.isTTY ? '\n' : ''}repair ${method}: ${r.layers.length} layers in ${r.seconds.toFixed(1)} s${r.skipped.length ? `, ${r.skipped.length} skipped` : ''}\n`);
    for (const s of r.skipped) process.stderr.write(`  skipped ${s.node}: ${s.reason}\n`);
    report.steps.push(r);
    current = model;
  }
  if (scores && current !== pruned) scores.repaired = await score(current, dense, evalData!, limit, 'repaired');
  if (current !== pruned) {
    pruned.graph = current.graph;
    pruned.metadata = current.metadata;
  }
  // keep the preprocessing with the model so later commands reuse it
  if (pp && Object.keys(pp).length && !readPreprocess(pruned)) writePreprocess(pruned, pp);
  if (scores) report.scores = scores;
  report.seconds = (performance.now() - t0) / 1000;
  return report;
}

function pct(v: number | undefined): string {
  return v === undefined ? '-' : `${(100 * v).toFixed(2)}%`;
}

export function formatStage(r: RepairStageReport): string {
  const lines: string[] = [];
  for (const s of r.steps) lines.push(`repair ${s.method}: ${s.layers.length} layers, ${s.seconds.toFixed(1)} s, ${s.calibSamples} calibration samples`);
  if (r.scores) {
    lines.push(`scores on ${r.scores.data}:`);
    for (const k of ['dense', 'pruned', 'repaired'] as const) {
      const e = r.scores[k];
      if (!e) continue;
      const f = Object.values(e.fidelity ?? {})[0];
      lines.push(`  ${k.padEnd(8)} top-1 ${pct(e.accuracy?.top1).padStart(7)}  agreement ${pct(f?.agreement).padStart(7)}  relMSE ${f ? f.relMse.toExponential(2) : '-'}`);
    }
  }
  return lines.join('\n');
}

export function registerRepair(program: Command): void {
  const cmd = program
    .command('repair')
    .description('Training-free accuracy repair of a pruned model against its dense original (layers matched by node name)')
    .argument('<pruned>', 'the pruned .onnx model')
    .requiredOption('--dense <onnx>', 'the dense (original) model')
    .option('-o, --output <path>', 'where to write the repaired model (required)')
    .option('--method <methods>', `${REPAIR_METHODS.join(' | ')}, or a comma list applied in order`, 'lsq')
    .option('--pattern <N:M>', '[obs, wanda] choose N:M masks (keep N of every M input channels)')
    .option('--json', 'print one JSON report on stdout');
  addRepairStepOptions(cmd, { repairFlag: false });
  cmd.action(async (prunedPath: string, o: Record<string, unknown>) => {
    if (typeof o['output'] !== 'string') throw new ShearsError('missing -o/--output: where to write the repaired model');
    o['repair'] = o['method'];
    checkRepairStep(o);
    const pruned = loadModel(prunedPath);
    const hints = typeof o['pattern'] === 'string' ? { pattern: o['pattern'] } : {};
    const r = await repairStage(o['dense'] as string, pruned, o, hints);
    saveModel(pruned, o['output']);
    const out = { model: prunedPath, dense: o['dense'], output: o['output'], ...r };
    process.stdout.write(o['json'] ? `${JSON.stringify(out)}\n` : `${formatStage(r!)}\nwritten: ${o['output']}\n`);
  });
}
