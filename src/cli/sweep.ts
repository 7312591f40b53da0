/**
 * `shears sweep MODEL --targets 0.9,0.7,0.5 [--target-kind macs|params|latency] --out DIR [prune/repair/finetune
 * flags as `shears prune --structured` takes them] [--val SPEC] [--batch N] [--threads N] [--json]`: one variant per
 * target through the library's sweep (pipeline/sweep.ts), written as DIR/<model>-<kind><target>.onnx as each is
 * built, then DIR/sweep.json and DIR/sweep.html (the report page with the Pareto front of accuracy against latency).
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { ShearsError } from '../errors.js';
import { checkOutputs, removePendingTemps } from '../fs/files.js';
import { preprocessFromFlags } from '../data/preprocess.js';
import type { Model } from '../ir/graph.js';
import { initializerBytes } from '../onnx/io.js';
import { formatMessage } from '../pipeline/events.js';
import type { Step } from '../pipeline/steps.js';
import { parseTargets, sweep, sweepLabel, SweepStopped, type SweepEvent, type SweepKind, type SweepReport } from '../pipeline/sweep.js';
import { renderEvidenceHtml } from '../report/html.js';
import { addPreprocessOptions, positiveInt, preprocessFlags } from './common.js';
import { openData, warnIfNearChance } from './data.js';
import { evalTask } from './eval.js';
import { checkFlagSteps, readModel } from './pipeline.js';
import { checkRoom, saveResult, saveTexts } from './room.js';
import { CONTEXTS, GivenFlags, checkAllUsed, flagOfKey, optionsFromFlags, registerContextFlags } from './step-flags.js';

const KINDS: readonly SweepKind[] = ['macs', 'params', 'latency'];
const SWEEP_CONTEXTS = CONTEXTS.filter((c) => (c.step === 'prune' && c.mode === 'structured') || c.step === 'repair' || c.step === 'finetune');
const ctx = (step: string) => SWEEP_CONTEXTS.find((c) => c.step === step)!;

interface SweepFlags {
  targets?: string;
  targetKind: string;
  out?: string;
  val?: string;
  valLimit?: string;
  evalBatch?: string;
  batch?: string;
  threads?: string;
  warmup?: string;
  runs?: string;
  task: string;
  cpuTime?: boolean;
  json?: boolean;
}

export function registerSweep(program: Command): void {
  const cmd = program
    .command('sweep')
    .description('Build one structured-pruning variant per target (prune, then repair and fine-tuning as asked), measure them all with the dense model (accuracy, latency interleaved, MACs, parameters, size) and mark the Pareto front of accuracy against latency')
    .argument('<model>', 'path to an .onnx file')
    .option('--targets <list>', 'comma list of fractions to keep, each in (0, 1], e.g. 0.9,0.7,0.5 (required)')
    .option('--target-kind <kind>', 'what the targets are fractions of: macs, params or latency (measured at --batch and --threads)', 'macs')
    .option('--out <dir>', 'folder for the variants (<model>-<kind><target>.onnx), sweep.json and sweep.html; made when missing (its parent must exist) (required)')
    .option('--val <spec>', 'evaluation data: top-1 with labels (mAP50-95 for a detector on yolo:/coco: data), fidelity to the dense model without; also the fine-tuning validation data')
    .option('--val-limit <n>', 'evaluate at most N samples of --val')
    .option('--eval-batch <n>', 'evaluation batch size (default 64)')
    .option('--batch <n>', 'latency: batch fed for dynamic batch dimensions (also the batch of --target-kind latency) (default 1)')
    .option('--threads <n>', 'onnxruntime threads for latency, latency planning and evaluation (fine-tuning: --finetune-threads) (default: onnxruntime\'s choice)')
    .option('--warmup <n>', 'latency: untimed runs per model (default 5)')
    .option('--runs <n>', 'latency: timed runs per model, interleaved across the dense model and every variant (default 30)')
    .option('--task <task>', 'auto, classify or detect (as shears eval --task)', 'auto')
    .option('--cpu-time', 'rank the front and give latency ratios by the median CPU time of a run instead of the median wall time (steadier on a shared machine with --threads 1)')
    .option('--json', 'print the sweep report (sweep.json less its evidence) as one JSON object');
  registerContextFlags(cmd, SWEEP_CONTEXTS);
  addPreprocessOptions(cmd);
  cmd.action(async (modelPath: string, o: SweepFlags, command: Command) => {
    if (o.targets === undefined) throw new ShearsError('missing --targets: a comma list of fractions in (0, 1], e.g. 0.9,0.7,0.5');
    if (o.out === undefined) throw new ShearsError('missing --out: the folder for the variants, sweep.json and sweep.html');
    const kind = o.targetKind as SweepKind;
    if (!KINDS.includes(kind)) throw new ShearsError(`--target-kind must be one of ${KINDS.join(', ')}, not '${o.targetKind}'`);
    const targets = parseTargets(o.targets);
    const int = (flag: string, v: string | undefined) => (v === undefined ? undefined : positiveInt(flag)(v));
    const num = {
      valLimit: int('--val-limit', o.valLimit), evalBatch: int('--eval-batch', o.evalBatch), batch: int('--batch', o.batch),
      threads: int('--threads', o.threads), warmup: int('--warmup', o.warmup), runs: int('--runs', o.runs),
    };
    if (o.val === undefined && (num.valLimit !== undefined || o.task !== 'auto')) throw new ShearsError(`${num.valLimit !== undefined ? '--val-limit' : '--task'} needs --val`);

    // The steps as `shears prune --structured` builds them from the same flags.
    const flags = new GivenFlags(command);
    const prune = optionsFromFlags(flags, ctx('prune'), {});
    let repair: Record<string, unknown> | undefined;
    if (flags.has('--repair') || flags.has('--data')) {
      repair = optionsFromFlags(flags, ctx('repair'), {});
      repair['methods'] ??= ['none'];
    }
    let finetune: Record<string, unknown> | undefined;
    if (flags.has('--finetune-epochs') || flags.has('--finetune-steps')) {
      finetune = optionsFromFlags(flags, ctx('finetune'), flags.has('--finetune-epochs') ? {} : { epochs: 1 });
      if (finetune['train'] === undefined) throw new ShearsError(`${flags.has('--finetune-epochs') ? '--finetune-epochs' : '--finetune-steps'} needs --train SPEC (training data)`);
      if (finetune['val'] === undefined && o.val !== undefined) finetune['val'] = o.val;
    }
    // (the sweep's own flags that share a name with a step's: --val, --threads, --batch)
    for (const f of ['--val', '--threads', '--batch']) flags.use(f);
    checkAllUsed(flags);
    const steps = [{ kind: 'prune', mode: 'structured', ...prune, target: { kind, value: targets[0] } }, ...(repair ? [{ kind: 'repair', ...repair }] : []), ...(finetune ? [{ kind: 'finetune', ...finetune }] : [])];
    checkFlagSteps(steps as unknown as Step[], flagOfKey);

    const { model, inputBytes } = readModel(modelPath);
    const task = o.val !== undefined ? evalTask(o.task, o.val, model) : { task: 'classify' as const };
    if (task.task === 'detect' && task.why) process.stderr.write(`task: detect (${task.why})\n`);

    // Every output is checked before any work: the folder, then no file of it replaces an input.
    const dir = o.out;
    if (existsSync(dir) && !statSync(dir).isDirectory()) throw new ShearsError(`--out '${dir}' is a file; give a folder`);
    if (!existsSync(dir) && !existsSync(dirname(resolve(dir)))) throw new ShearsError(`--out '${dir}': the folder '${dirname(dir)}' does not exist`);
    const stem = basename(modelPath).replace(/\.onnx$/i, '');
    const fileOf = (target: number) => join(dir, `${stem}-${sweepLabel(kind, target)}.onnx`);
    const json = join(dir, 'sweep.json');
    const html = join(dir, 'sweep.html');
    const outputs = [...targets.map((t) => ({ flag: '--out', path: fileOf(t), extensions: ['.onnx'] })), { flag: '--out', path: json }, { flag: '--out', path: html }];
    if (!existsSync(dir)) mkdirSync(dir);
    const inputs = [modelPath, ...[o.val, prune['calib'], repair?.['calib'], repair?.['data'], finetune?.['train'], finetune?.['val']].filter((x): x is string => typeof x === 'string')];
    checkOutputs(outputs, inputs);
    const replacing = outputs.filter((x) => existsSync(x.path)).length;
    if (replacing) process.stderr.write(`shears: replacing ${replacing} file(s) in '${dir}' as the sweep writes them\n`);

    const preprocess = preprocessFromFlags(preprocessFlags(command.opts()));
    const ac = new AbortController();
    let signals = 0;
    const onSignal = (sig: 'SIGINT' | 'SIGTERM') => {
      if (signals++ === 0) {
        process.stderr.write(`\nshears: ${sig}: stopping once the target in hand is done (a fine-tuning step stops at its next training step); the variants written so far stay; send it again to abort at once\n`);
        ac.abort();
        return;
      }
      removePendingTemps();
      process.stderr.write(`shears: ${sig}: aborted\n`);
      process.exit(sig === 'SIGINT' ? 130 : 143);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    let report: SweepReport;
    const written: string[] = [];
    try {
      report = await sweep(model, {
        targets, kind, prune,
        ...(repair ? { repair } : {}),
        ...(finetune ? { finetune } : {}),
        ...(Object.keys(preprocess).length ? { preprocess } : {}),
        ...(o.val !== undefined ? { val: o.val } : {}),
        ...(num.valLimit !== undefined ? { dataLimit: num.valLimit } : {}),
        ...(num.evalBatch !== undefined ? { evalBatch: num.evalBatch } : {}),
        ...(num.batch !== undefined ? { batch: num.batch } : {}),
        ...(num.threads !== undefined ? { threads: num.threads } : {}),
        ...(num.warmup !== undefined ? { warmup: num.warmup } : {}),
        ...(num.runs !== undefined ? { runs: num.runs } : {}),
        task: task.task,
        latencyBy: o.cpuTime ? 'cpuMedian' : 'median',
        openData,
        inputBytes,
        signal: ac.signal,
        onProgress: printSweepEvent,
        // A full device: the variant in hand goes to a rescue folder (saveResult) and the sweep stops, naming it
        // and the variants already written; before a variant's fine-tuning, its output must have room.
        ...(finetune ? { beforeFinetune: (m: Model) => checkRoom(join(dir, 'variant.onnx'), initializerBytes(m), 'the next fine-tuned variant') } : {}),
        onVariant: (v) => {
          const path = fileOf(v.target);
          try {
            saveResult(v.model, path);
          } catch (e) {
            if (e instanceof ShearsError && written.length) throw new ShearsError(`${e.message} (the sweep stopped; written before: ${written.join(', ')})`, { cause: e });
            throw e;
          }
          written.push(path);
          process.stderr.write(`[${v.label}] wrote ${path}\n`);
          return path;
        },
      });
    } catch (e) {
      if (e instanceof SweepStopped) {
        process.stderr.write(`shears: interrupted: ${e.message}${e.built.length ? ` (written: ${e.built.map((x) => x.file ?? x.label).join(', ')})` : ''}; no sweep.json or sweep.html written\n`);
        process.exit(signals > 0 ? 130 : 1);
      }
      throw e;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    saveTexts([
      { path: json, text: `${JSON.stringify(report, null, 1)}\n` },
      { path: html, text: renderEvidenceHtml(report.evidence, { title: `shears sweep: ${stem}, ${kind} targets ${targets.join(', ')}${repair ? `, repair ${(repair['methods'] as string[]).join('+')}` : ''}${finetune ? `, fine-tuned ${String(finetune['epochs'])} epoch(s)` : ''}` }) },
    ]);
    if (o.json) {
      const { evidence: _e, ...rest } = report;
      process.stdout.write(`${JSON.stringify({ model: modelPath, json, html, ...rest }, null, 2)}\n`);
      return;
    }
    process.stdout.write(`${formatSweep(report)}\nwrote ${json} and ${html}\n`);
  });
}

function printSweepEvent(e: SweepEvent): void {
  if (e.type === 'phase') process.stderr.write(`${e.message}\n`);
  else if (e.type === 'target') process.stderr.write(`[${e.label}] ${e.phase === 'plan' ? 'planning' : 'building'} (${e.index + 1}/${e.total})\n`);
  else if (e.type === 'progress') {
    if (process.stderr.isTTY) process.stderr.write(`\revaluating ${e.label} ${e.done}/${e.total}${e.done >= e.total ? '\n' : ''}`);
  } else {
    const ev = e.event;
    if (ev.type === 'info') process.stderr.write(`[${e.label}] ${formatMessage(ev.message, flagOfKey)}\n`);
    else if (ev.type === 'warning') process.stderr.write(`shears: warning: [${e.label}] ${formatMessage(ev.message, flagOfKey)}\n`);
    else if (ev.type === 'progress' && process.stderr.isTTY) process.stderr.write(`\r[${e.label}] ${ev.message}${ev.done >= ev.total ? '\n' : ''}`);
    else if (ev.type === 'scored') warnIfNearChance(ev.report, ev.what);
  }
}

/** The sweep as a text table: one row per model, the front marked. */
export function formatSweep(r: SweepReport): string {
  const pct = (v: number | undefined, d = 2) => (v === undefined ? '-' : `${(100 * v).toFixed(d)}%`);
  const s = r.evidence.settings;
  const q = r.metric === 'top1' ? 'top-1' : r.metric === 'map50-95' ? 'mAP50-95' : r.metric === 'agreement' ? 'agree' : r.metric === 'relMse' ? 'relMSE' : 'quality';
  const fq = (v: number | undefined) => (v === undefined ? '-' : r.metric === 'relMse' ? v.toExponential(2) : r.metric === 'map50-95' ? v.toFixed(4) : pct(v));
  const all = [r.dense, ...r.points];
  const w = Math.max(5, ...all.map((p) => p.label.length));
  const lines = [`${r.kind} sweep: latency batch ${s.batch}, threads ${s.threads ?? 'default'}, ${s.runs} interleaved runs${s.dataset ? `; data ${s.dataset} (${s.samples} samples)` : ''}; front by ${r.metric ? `${q} and ` : ''}${r.latencyBy === 'cpuMedian' ? 'CPU time' : 'median latency'}`];
  lines.push(`${'model'.padEnd(w)} ${'MACs'.padStart(7)} ${'params'.padStart(7)} ${q.padStart(8)} ${'median ms'.padStart(10)} ${'CPU ms'.padStart(9)} ${'ratio'.padStart(8)}  front`);
  for (const p of all) {
    lines.push(`${p.label.padEnd(w)} ${pct(p.macsRatio, 1).padStart(7)} ${pct(p.paramsRatio, 1).padStart(7)} ${fq(p.quality).padStart(8)} ${p.latencyMs.toFixed(3).padStart(10)} ${p.cpuMs.toFixed(3).padStart(9)} ${`${p.latencyRatio.toFixed(3)}x`.padStart(8)}  ${p.pareto ? '*' : ''}`);
  }
  lines.push(`(MACs, parameters and latency (ratio) relative to the dense model; * on the Pareto front, fastest first: ${r.front.join(', ')})`);
  lines.push(`${r.seconds.toFixed(1)} s: planning ${r.phaseSeconds.plan.toFixed(1)} s, building ${r.phaseSeconds.build.toFixed(1)} s, measuring ${r.phaseSeconds.measure.toFixed(1)} s`);
  return lines.join('\n');
}
