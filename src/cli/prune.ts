/**
 * `shears prune MODEL -o OUT --sparsity S | --pattern N:M`: unstructured / N:M pruning with masks stored in the
 * output model. Wiring only: the work is in src/sparsity. `--structured` is delegated to prune-structured.ts.
 */
import { readFileSync } from 'node:fs';
import { addFinetuneStepOptions, finetuneStep } from './finetune.js';
import type { Command } from 'commander';
import { ShearsError } from '../errors.js';
import { loadModel, saveModel } from '../onnx/io.js';
import { parseNumber, parseRegex } from './args.js';
import { registerStructuredOptions, runStructured } from './prune-structured.js';
import { addQuantizeStepOptions, checkQuantizeStep, quantizeStep } from './quantize.js';
import { addRepairStepOptions, checkRepairStep, formatStage, repairStage } from './repair.js';
import { modelSparsity, modelSizes } from '../sparsity/stats.js';
import { parsePattern } from '../sparsity/nm.js';
import { removeMasks } from '../sparsity/masks.js';
import { pruneUnstructured, type Scope, type UnstructuredOptions } from '../sparsity/unstructured.js';

interface PruneCliOptions {
  output?: string;
  sparsity?: string;
  global?: boolean;
  perLayer?: boolean;
  lamp?: boolean;
  method?: string;
  pattern?: string;
  include?: string;
  exclude?: string;
  keepFirstLast?: boolean;
  layerSparsity?: string[];
  seed?: string;
  masks?: boolean;
  json?: boolean;
  structured?: boolean;
}

export function registerPrune(program: Command): void {
  const cmd = program
    .command('prune')
    .description('Prune weights: unstructured (global, per-layer or LAMP) or N:M; masks are stored in the output model')
    .argument('<model>', 'path to an .onnx file')
    .option('-o, --output <path>', 'where to write the pruned model (required)')
    .option('--sparsity <s>', 'fraction in [0,1) of the still-unpruned layer weights to prune')
    .option('--global', 'one magnitude threshold over all selected weights (default)')
    .option('--per-layer', 'the same fraction in every layer (exact per layer)')
    .option('--lamp', 'layer-adaptive amounts from one threshold over LAMP scores')
    .option('--method <m>', 'l1 (smallest |w| first, default) or random')
    .option('--pattern <N:M>', 'N:M semi-structured sparsity along the reduction axis (e.g. 2:4) instead of --sparsity')
    .option('--include <regex>', 'only prune weights whose initializer or node name matches')
    .option('--exclude <regex>', 'do not prune weights whose initializer or node name matches')
    .option('--keep-first-last', 'keep the first and the last layer dense')
    .option('--layer-sparsity <name=s...>', 'own fraction for a layer, by initializer or node name (repeatable)')
    .option('--seed <n>', 'seed for --method random (default 0)')
    .option('--no-masks', 'bake the zeros in and store no masks (smaller file; later stages cannot tell pruned zeros)')
    .option('--json', 'print one JSON report on stdout');
  // HOOK: structured pruning registers its options here and takes over when --structured is given.
  registerStructuredOptions(cmd);
  // HOOK: `--quantize MODE` quantizes the written model as the last step (src/cli/quantize.ts).
  addQuantizeStepOptions(cmd);
  // HOOK: `--repair METHOD --calib SPEC [--data SPEC]` repairs the pruned model against the original and scores
  // the stages (src/cli/repair.ts).
  addRepairStepOptions(cmd);
  // HOOK: `--finetune-epochs E --train SPEC [--val SPEC]` fine-tunes the written model (src/cli/finetune.ts).
  addFinetuneStepOptions(cmd);
  cmd.action(async (modelPath: string, options: PruneCliOptions) => {
    checkQuantizeStep(options as Record<string, unknown>);
    checkRepairStep(options as Record<string, unknown>);
    const report = options.structured
      ? await runStructured(modelPath, options as Record<string, unknown>)
      : await runUnstructured(modelPath, options);
    const finetuned = await finetuneStep(modelPath, options.output, options as Record<string, unknown>);
    const quantized = await quantizeStep(options.output, options as Record<string, unknown>);
    // One JSON object for the whole pipeline: prune (+ repair), then fine-tune and quantize when asked.
    if (options.json) {
      const all = { ...report, ...(finetuned ? { finetune: finetuned } : {}), ...(quantized ? { quantize: quantized } : {}) };
      process.stdout.write(`${JSON.stringify(all, null, 2)}\n`);
    }
  });
}

function scopeOf(o: PruneCliOptions): Scope {
  const chosen = (['global', 'perLayer', 'lamp'] as const).filter((k) => o[k]);
  if (chosen.length > 1) throw new ShearsError('choose one of --global, --per-layer, --lamp');
  return chosen[0] === 'perLayer' ? 'layer' : chosen[0] === 'lamp' ? 'lamp' : 'global';
}

export function pruneOptionsFromCli(o: PruneCliOptions): UnstructuredOptions {
  if (o.sparsity === undefined && o.pattern === undefined) throw new ShearsError('give --sparsity S or --pattern N:M');
  if (o.sparsity !== undefined && o.pattern !== undefined) throw new ShearsError('give either --sparsity or --pattern, not both');
  const method = o.method ?? 'l1';
  if (method !== 'l1' && method !== 'random') throw new ShearsError(`--method must be l1 or random, got '${method}'`);
  const scope = scopeOf(o);
  if (o.pattern !== undefined && (o.perLayer || o.lamp)) throw new ShearsError('--pattern works per group: it does not take --per-layer or --lamp');
  const opts: UnstructuredOptions = { scope, method };
  if (o.sparsity !== undefined) opts.sparsity = parseNumber(o.sparsity, '--sparsity', { min: 0, max: 1, exclusiveMax: true });
  if (o.pattern !== undefined) opts.pattern = parsePattern(o.pattern);
  if (o.include !== undefined) opts.include = parseRegex(o.include, '--include');
  if (o.exclude !== undefined) opts.exclude = parseRegex(o.exclude, '--exclude');
  if (o.keepFirstLast) opts.keepFirstLast = true;
  if (o.seed !== undefined) opts.seed = parseNumber(o.seed, '--seed', { integer: true, min: 0 });
  if (o.layerSparsity?.length) {
    if (o.pattern !== undefined) throw new ShearsError('--layer-sparsity does not apply to --pattern');
    const per: Record<string, number> = {};
    for (const spec of o.layerSparsity) {
      const eq = spec.lastIndexOf('=');
      if (eq <= 0) throw new ShearsError(`--layer-sparsity '${spec}': expected NAME=S`);
      per[spec.slice(0, eq)] = parseNumber(spec.slice(eq + 1), `--layer-sparsity ${spec.slice(0, eq)}`, { min: 0, max: 1, exclusiveMax: true });
    }
    opts.perLayer = per;
  }
  return opts;
}

function fileBytes(path: string): Uint8Array {
  const b = readFileSync(path);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** Runs unstructured/N:M pruning; prints the text report unless --json, and returns the JSON report. */
async function runUnstructured(modelPath: string, o: PruneCliOptions): Promise<Record<string, unknown>> {
  if (!o.output) throw new ShearsError('missing -o/--output: where to write the pruned model');
  const opts = pruneOptionsFromCli(o);
  const model = loadModel(modelPath);
  const before = { ...modelSparsity(model), ...modelSizes(fileBytes(modelPath)) };
  const report = pruneUnstructured(model, opts);
  if (report.kind === 'n:m') for (const sk of report.skipped) if (sk.reason.startsWith('left dense')) process.stderr.write(`shears: warning: ${sk.name} ${sk.reason}\n`);
  for (const w of report.warnings) process.stderr.write(`shears: warning: ${w}\n`);
  if (report.total.prunedNow === 0) {
    const why = report.layers.length === 0 ? `no layer weight was selected${report.skipped.length ? ` (${report.skipped.length} skipped: ${report.skipped.slice(0, 3).map((s) => `${s.name}: ${s.reason}`).join('; ')}${report.skipped.length > 3 ? '; ...' : ''})` : ''}` : 'the selected weights are already pruned to the requested sparsity';
    throw new ShearsError(`nothing was pruned: ${why}; no file written`);
  }
  const repaired = await repairStage(modelPath, model, o as unknown as Record<string, unknown>, o.pattern !== undefined ? { pattern: o.pattern } : {});
  const keepMasks = o.masks !== false;
  if (!keepMasks) removeMasks(model);
  const saved = saveModel(model, o.output);
  const afterStats = modelSparsity(model);
  const after = { ...afterStats, ...modelSizes(fileBytes(o.output)) };
  const summary = (s: typeof before) => ({
    params: s.params, nonzero: s.nonzero, sparsity: s.sparsity,
    layerParams: s.layerParams, layerNonzero: s.layerNonzero, layerSparsity: s.layerSparsity,
    fileBytes: s.bytes, gzipBytes: s.gzipBytes,
  });
  const out = {
    model: modelPath,
    output: o.output,
    ...(saved.externalFile ? { externalData: saved.externalFile } : {}),
    mode: { kind: report.kind, scope: report.scope, method: report.method, sparsity: report.sparsity, pattern: report.pattern },
    masksStored: keepMasks,
    before: summary(before),
    after: summary(after),
    pruned: report.total,
    layers: afterStats.layers.map((l) => {
      const r = report.layers.find((x) => x.name === l.name);
      return { ...l, prunedNow: r?.prunedNow ?? 0, pruned: r !== undefined };
    }),
    skipped: report.skipped,
    warnings: report.warnings,
    ...(repaired ? { repair: repaired } : {}),
  };
  if (o.json) return out;
  const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
  const lines: string[] = [];
  lines.push(`${'layer weight'.padEnd(36)} ${'op'.padEnd(14)} ${'params'.padStart(9)} ${'nonzero'.padStart(9)} ${'sparsity'.padStart(8)}`);
  for (const l of out.layers) {
    lines.push(`${l.name.slice(0, 36).padEnd(36)} ${l.op.slice(0, 14).padEnd(14)} ${String(l.params).padStart(9)} ${String(l.nonzero).padStart(9)} ${pct(l.sparsity).padStart(8)}${l.pruned ? '' : '  (not pruned)'}`);
  }
  lines.push(`layer weights: ${out.after.layerNonzero} of ${out.after.layerParams} nonzero, sparsity ${pct(out.before.layerSparsity)} -> ${pct(out.after.layerSparsity)}`);
  lines.push(`all parameters: ${out.after.nonzero} of ${out.after.params} nonzero, sparsity ${pct(out.after.sparsity)}`);
  lines.push(`file: ${out.before.fileBytes} -> ${out.after.fileBytes} bytes; gzip: ${out.before.gzipBytes} -> ${out.after.gzipBytes} bytes${keepMasks ? ' (masks stored in the file)' : ''}`);
  for (const s of out.skipped) lines.push(`skipped ${s.name}: ${s.reason}`);
  lines.push('note: unstructured sparsity saves storage (compressed size), not CPU time: onnxruntime has no sparse kernels');
  if (repaired) lines.push(formatStage(repaired));
  process.stdout.write(`${lines.join('\n')}\n`);
  return out;
}
