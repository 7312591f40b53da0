/**
 * `shears prune MODEL -o OUT --structured (--ratio R | --target-macs F | --target-params F | --target-latency F
 * | --plan FILE) [...]`: removes whole channels (and residual blocks). Wiring only: the work is in
 * src/prune/structured, src/plan, src/importance and src/depgraph.
 */
import { readFileSync } from 'node:fs';
import { writeFileAtomic } from '../fs/files.js';
import type { Command } from 'commander';
import { ShearsError } from '../errors.js';
import { loadModel, saveModel } from '../onnx/io.js';
import { formatStage, repairStage } from './repair.js';
import { parseInputShapes, parseNumber, parseRegex } from './args.js';
import { pruneStructured, taylorGradients, type StructuredOptions } from '../prune/structured/index.js';
import { chooseBlocks } from '../prune/structured/depth.js';
import { concreteInputShapes } from '../depgraph/analyze.js';
import { addPreprocessOptions, preprocessFlags } from './eval.js';
import { preprocessFor } from '../data/preprocess.js';
import { openData } from './data.js';
import { loadArrays } from '../data/in-memory.js';
import { pruneToLatency } from '../prune/structured/latency.js';
import type { StructuredPlan } from '../plan/plan.js';

/**
 * Default --round-to, from measurements (bench/latency-roundto.ts, onnxruntime-node 1.30 on this AVX-512 machine,
 * 50% MACs, CPU time with 1 thread): round-to 1 ran 0.8x (fmnist_resnet20, batch 128, slower than dense), 8 ran
 * 1.2x, 16 ran 1.6x; resnet18 batch 1: 1.6x / 1.6x / 1.85x. onnxruntime's NCHWc convolutions work in blocks of
 * 16 channels here.
 */
export const DEFAULT_ROUND_TO = 16;

/** Adds the structured-pruning options to the `prune` command. */
export function registerStructuredOptions(cmd: Command): void {
  cmd
    .option('--structured', 'remove whole channels (structured pruning) instead of masking weights')
    .option('--ratio <r>', '[structured] fraction of channels to remove from each group (or globally with --global)')
    .option('--target-macs <f>', '[structured] keep this fraction of the MACs (within 2%)')
    .option('--target-params <f>', '[structured] keep this fraction of the parameters (within 2%)')
    .option('--target-latency <f>', '[structured] keep this fraction of the measured onnxruntime latency')
    .option('--importance <kind>', '[structured] l1, l2 (default), fpgm, random or taylor (needs --taylor-data)')
    .option('--taylor-data <spec>', '[structured] labelled data for Taylor importance (cross-entropy gradients)')
    .option('--taylor-batches <n>', '[structured] batches of 32 for Taylor importance (default 4)')
    .option('--aggregate <how>', '[structured] combine a channel\'s coupled parameters by sum, mean (default) or max')
    .option('--round-to <n>', `[structured] kept channel counts are multiples of n (default ${DEFAULT_ROUND_TO}; 1 for exact counts)`)
    .option('--max-layer-ratio <r>', '[structured] remove at most this fraction of any group (default 0.9)')
    .option('--ignore <regex>', '[structured] do not prune layers whose node or weight name matches')
    .option('--remove-blocks <k>', '[structured] remove the k least important residual branches (depth pruning)')
    .option('--input-shape <spec...>', 'static input shape NAME=1x3x224x224 (repeatable)')
    .option('--save-plan <file>', '[structured] write the pruning plan (JSON)')
    .option('--plan <file>', '[structured] replay a saved plan')
    .option('--batch <n>', '[structured] batch size for --target-latency measurements (default 1)')
    .option('--threads <n>', '[structured] onnxruntime threads for --target-latency measurements');
  if (!cmd.options.some((o) => o.long === '--scale')) addPreprocessOptions(cmd);
}

interface StructuredCli {
  output?: string;
  ratio?: string;
  targetMacs?: string;
  targetParams?: string;
  targetLatency?: string;
  importance?: string;
  aggregate?: string;
  roundTo?: string;
  maxLayerRatio?: string;
  ignore?: string;
  removeBlocks?: string;
  inputShape?: string[];
  savePlan?: string;
  plan?: string;
  global?: boolean;
  seed?: string;
  json?: boolean;
  batch?: string;
  threads?: string;
  sparsity?: string;
  pattern?: string;
  taylorData?: string;
  taylorBatches?: string;
}

function readPlan(path: string): StructuredPlan {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new ShearsError(`cannot read plan '${path}'`);
  }
  try {
    return JSON.parse(text) as StructuredPlan;
  } catch (e) {
    throw new ShearsError(`plan '${path}' is not JSON: ${(e as Error).message}`);
  }
}

/** Runs `shears prune MODEL --structured ...` with commander's parsed options for the prune command. */
/** Runs structured pruning; prints the text report unless --json, and returns the JSON report. */
export async function runStructured(modelPath: string, options: Record<string, unknown>): Promise<Record<string, unknown>> {
  const o = options as StructuredCli;
  if (!o.output) throw new ShearsError('give the output path with -o OUT');
  if (o.sparsity !== undefined || o.pattern !== undefined) throw new ShearsError('--structured removes channels: it does not take --sparsity or --pattern');
  const targets = (['ratio', 'targetMacs', 'targetParams', 'targetLatency', 'plan'] as const).filter((k) => o[k] !== undefined);
  if (targets.length > 1) throw new ShearsError('give only one of --ratio, --target-macs, --target-params, --target-latency, --plan');
  if (targets.length === 0 && o.removeBlocks === undefined) throw new ShearsError('give one of --ratio, --target-macs, --target-params, --target-latency, --plan or --remove-blocks');
  const importance = o.importance ?? 'l2';
  if (!['l1', 'l2', 'fpgm', 'random', 'taylor'].includes(importance)) throw new ShearsError(`--importance must be l1, l2, fpgm, random or taylor, got '${importance}'`);
  if (importance === 'taylor' && !o.taylorData && o.plan === undefined) throw new ShearsError('--importance taylor needs labelled data: --taylor-data SPEC');
  const aggregate = o.aggregate ?? 'mean';
  if (!['sum', 'mean', 'max'].includes(aggregate)) throw new ShearsError(`--aggregate must be sum, mean or max, got '${aggregate}'`);
  const frac = (v: string, what: string) => parseNumber(v, what, { min: 0, max: 1 });
  const opts: StructuredOptions = {
    importance: importance as StructuredOptions['importance'] & string,
    aggregate: aggregate as StructuredOptions['aggregate'] & string,
    roundTo: o.roundTo !== undefined ? parseNumber(o.roundTo, '--round-to', { min: 1, integer: true }) : DEFAULT_ROUND_TO,
    global: !!o.global,
    progress: (m) => process.stderr.write(`shears: ${m}\n`),
  };
  if (o.ratio !== undefined) opts.ratio = parseNumber(o.ratio, '--ratio', { min: 0, max: 1, exclusiveMax: true });
  if (o.targetMacs !== undefined) opts.targetMacs = frac(o.targetMacs, '--target-macs');
  if (o.targetParams !== undefined) opts.targetParams = frac(o.targetParams, '--target-params');
  if ((opts.targetMacs ?? 1) <= 0 || (opts.targetParams ?? 1) <= 0) throw new ShearsError('a target must be above 0');
  if (o.maxLayerRatio !== undefined) opts.maxLayerRatio = parseNumber(o.maxLayerRatio, '--max-layer-ratio', { min: 0, max: 1 });
  if (opts.maxLayerRatio === 0) throw new ShearsError('--max-layer-ratio must be above 0');
  if (o.ignore !== undefined) opts.ignore = parseRegex(o.ignore, '--ignore');
  if (o.removeBlocks !== undefined) opts.removeBlocks = parseNumber(o.removeBlocks, '--remove-blocks', { min: 0, integer: true });
  if (o.seed !== undefined) opts.seed = parseNumber(o.seed, '--seed', { integer: true });
  const latencyTarget = o.targetLatency !== undefined ? parseNumber(o.targetLatency, '--target-latency', { min: 0, max: 1 }) : undefined;
  if (latencyTarget === 0) throw new ShearsError('--target-latency must be above 0');
  const batch = o.batch !== undefined ? parseNumber(o.batch, '--batch', { min: 1, integer: true }) : 1;
  const threads = o.threads !== undefined ? parseNumber(o.threads, '--threads', { min: 1, integer: true }) : undefined;
  const plan = o.plan !== undefined ? readPlan(o.plan) : undefined;
  if (plan) opts.plan = plan;

  const t0 = performance.now();
  const model = loadModel(modelPath);
  const inputShapes = parseInputShapes(o.inputShape, model);
  opts.inputShapes = inputShapes;
  if (importance === 'taylor' && !plan) {
    const pp = preprocessFor(model, preprocessFlags(options));
    if (pp.warning) process.stderr.write(`shears: warning: ${pp.warning}\n`);
    const batches = o.taylorBatches !== undefined ? parseNumber(o.taylorBatches, '--taylor-batches', { min: 1, integer: true }) : 4;
    const data = await loadArrays(await openData(o.taylorData!, pp.spec), batches * 32);
    const blocks = opts.removeBlocks ? chooseBlocks(model, opts.removeBlocks, concreteInputShapes(model, inputShapes)) : [];
    opts.progress?.(`Taylor importance: gradients over ${Math.min(batches, Math.floor(data.n / 32)) || 1} batches`);
    opts.gradients = await taylorGradients(model, data, { inputShapes, removeBlocks: blocks, batch: 32, batches, ...(threads ? { threads } : {}) });
  }
  const res = latencyTarget !== undefined
    ? await pruneToLatency(model, latencyTarget, opts, { batch, ...(threads ? { threads } : {}), inputShapes })
    : pruneStructured(model, opts);
  if (res.report.removedChannels === 0 && res.report.removedBlocks.length === 0) {
    const reasons = new Map<string, number>();
    for (const f of res.report.frozen) reasons.set(f.reason, (reasons.get(f.reason) ?? 0) + 1);
    const frozen = [...reasons].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([why, n]) => `${n} x ${why}`).join('; ');
    throw new ShearsError(`nothing was pruned: ${res.report.prunableChannels === 0 ? `no prunable channels (frozen: ${frozen || 'none'})` : 'the target keeps every channel'}; no file written`);
  }
  const repaired = await repairStage(modelPath, res.model, options);
  saveModel(res.model, o.output);
  if (o.savePlan) writeFileAtomic(o.savePlan, `${JSON.stringify(res.plan, null, 1)}\n`);
  const seconds = (performance.now() - t0) / 1000;
  const r = res.report;
  const want = opts.targetMacs !== undefined ? ['MACs', opts.targetMacs, r.macsRatio] as const : opts.targetParams !== undefined ? ['params', opts.targetParams, r.paramsRatio] as const : undefined;
  if (want && Math.abs(want[2] - want[1]) > 0.02 * want[1]) {
    process.stderr.write(`shears: warning: kept ${(want[2] * 100).toFixed(1)}% of the ${want[0]}, target ${(want[1] * 100).toFixed(1)}%: ` +
      `too few prunable channels (${r.prunableChannels}; ${r.frozen.length} frozen axes, see the report) or --max-layer-ratio/--round-to too strict\n`);
  }
  const reasons = new Map<string, number>();
  for (const f of r.frozen) reasons.set(f.reason, (reasons.get(f.reason) ?? 0) + 1);
  const out = {
    model: modelPath,
    output: o.output,
    before: r.before,
    after: r.after,
    macsRatio: r.macsRatio,
    paramsRatio: r.paramsRatio,
    removedChannels: r.removedChannels,
    prunableChannels: r.prunableChannels,
    groups: r.groups,
    removedBlocks: r.removedBlocks,
    layers: r.layers,
    frozen: r.frozen,
    ...('latency' in res ? { latency: (res as { latency: unknown }).latency } : {}),
    seconds,
    timingsMs: r.timings,
    ...(repaired ? { repair: repaired } : {}),
  };
  if (o.json) return out;
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const lines = [
    `${modelPath} -> ${o.output} (${seconds.toFixed(2)} s)`,
    `MACs   ${r.before.macs.toLocaleString('en-US')} -> ${r.after.macs.toLocaleString('en-US')} (${pct(r.macsRatio)})`,
    `params ${r.before.params.toLocaleString('en-US')} -> ${r.after.params.toLocaleString('en-US')} (${pct(r.paramsRatio)})`,
    `channels removed: ${r.removedChannels} of ${r.prunableChannels} prunable in ${r.groups} groups${r.removedBlocks.length ? `; residual blocks removed: ${r.removedBlocks.join(', ')}` : ''}`,
  ];
  if ('latency' in res) {
    const l = (res as { latency: { dense: number; pruned: number; ratio: number } }).latency;
    lines.push(`latency ${l.dense.toFixed(2)} ms -> ${l.pruned.toFixed(2)} ms (${pct(l.ratio)}, batch ${batch})`);
  }
  for (const l of r.layers) lines.push(`  ${l.node} (${l.opType}): ${l.before} -> ${l.after}`);
  if (reasons.size) {
    lines.push('frozen (kept whole):');
    for (const [k, n] of reasons) lines.push(`  ${n} x ${k}`);
  }
  if (repaired) lines.push(formatStage(repaired));
  process.stdout.write(`${lines.join('\n')}\n`);
  return out;
}
