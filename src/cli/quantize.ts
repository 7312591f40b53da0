/**
 * `shears quantize MODEL -o OUT [--mode int8|dynamic|fp16|int4] ...`: wiring only; the work is in src/quant.
 */
import type { Command } from 'commander';
import { openData, warnIfNearChance } from './data.js';
import { preprocessFor, writePreprocess } from '../data/preprocess.js';
import { ShearsError } from '../errors.js';
import type { Model } from '../ir/graph.js';
import { evaluate, type EvalReport } from '../metrics/evaluate.js';
import { loadModel, saveModel } from '../onnx/io.js';
import { encodeModel } from '../onnx/codec.js';
import { modelSizes } from '../sparsity/stats.js';
import {
  calibrationBatch, convertFp16, datasetCalibration, optimizedOpTypes, quantizeDynamic, quantizeInt4, quantizeStatic, randomCalibration,
  sparsity24, TRT_OPTIONS, type CalibrationData, type StaticQuantOptions,
} from '../quant/index.js';
import { parseNumber, parseRegex } from './args.js';
import { addPreprocessOptions, positiveInt, preprocessFlags, progressPrinter } from './eval.js';

const MODES = ['int8', 'dynamic', 'fp16', 'int4'] as const;
type Mode = (typeof MODES)[number];

function oneOf<T extends string>(flag: string, v: unknown, allowed: readonly T[], dflt: T): T {
  if (v === undefined) return dflt;
  if (typeof v !== 'string' || !allowed.includes(v as T)) throw new ShearsError(`${flag} must be one of ${allowed.join(', ')}, got '${String(v)}'`);
  return v as T;
}

async function calibrationFrom(model: Model, o: Record<string, unknown>, size: number): Promise<CalibrationData> {
  const spec = o['calib'];
  if (spec === undefined) throw new ShearsError('--mode int8 needs calibration data: --calib SPEC (a data set; or "random" for random-weight models)');
  if (spec === 'random') {
    process.stderr.write('shears: warning: calibrating on random normal inputs: use only for random-weight models (speed/structure checks)\n');
    const bs = calibrationBatch(model, 8);
    return randomCalibration(model, Math.max(1, Math.ceil(size / bs)), bs);
  }
  const pp = preprocessFor(model, preprocessFlags(o));
  const ds = await openData(spec as string, pp.spec);
  if (pp.warning) process.stderr.write(`shears: warning: ${pp.warning}\n`);
  return datasetCalibration(model, ds, size);
}

async function scoreOn(model: Model, o: Record<string, unknown>, reference?: Model): Promise<EvalReport> {
  const pp = preprocessFor(reference ?? model, preprocessFlags(o));
  const ds = await openData(o['data'] as string, pp.spec);
  const opts: Parameters<typeof evaluate>[2] = { onProgress: progressPrinter(reference ? 'eval (quantized)' : 'eval (float)') };
  if (reference) opts.reference = reference;
  if (typeof o['limit'] === 'number') opts.limit = o['limit'];
  return evaluate(model, ds, opts);
}

export function registerQuantize(program: Command): void {
  const cmd = program
    .command('quantize')
    .description('Quantize a model: static int8 QDQ (calibrated), dynamic int8, fp16, or weight-only int4 (MatMulNBits)')
    .argument('<model>', 'path to an .onnx file')
    .option('-o, --output <path>', 'where to write the quantized model (required)')
    .option('--mode <mode>', 'int8 (static QDQ, default) | dynamic | fp16 | int4')
    .option('--calib <spec>', 'calibration data set for int8 (same specs as --data), or "random"')
    .option('--calib-size <n>', 'calibration samples (default 256)', positiveInt('--calib-size'))
    .option('--calibrator <c>', 'minmax (default) | percentile | entropy')
    .option('--percentile <p>', 'percentile kept by --calibrator percentile (default 99.99)')
    .option('--exclude <regex>', 'keep nodes whose name matches in float')
    .option('--auto-exclude <n>', 'keep the N nodes most sensitive to quantization in float (measured per layer)', positiveInt('--auto-exclude'))
    .option('--per-tensor', 'one weight scale per tensor instead of per output channel')
    .option('--reduce-range', 'int8/dynamic: 7-bit weights (default with uint8 activations; safe on x86 CPUs without VNNI)')
    .option('--no-reduce-range', 'int8/dynamic: 8-bit weights, correct only on x86 CPUs with VNNI and on ARM (other x86 CPUs saturate int16 sums: wrong outputs)')
    .option('--target <t>', 'ort (uint8 activations, int8 weights, int32 bias: what onnxruntime fuses, default) | trt (TensorRT explicit quantization: symmetric int8, Q/DQ on float weights, 2:4 report)')
    .option('--block-size <n>', 'int4 block size: 16, 32, 64 or 128 (default 32)')
    .option('--io-fp16', 'fp16: make the graph inputs and outputs float16 too')
    .option('--data <spec>', 'score accuracy/fidelity of the model before and after on this data set')
    .option('--limit <n>', 'score at most N samples', positiveInt('--limit'))
    .option('--json', 'print one JSON report on stdout');
  addPreprocessOptions(cmd).action(async (modelPath: string, o: Record<string, unknown>) => {
    if (typeof o['output'] !== 'string') throw new ShearsError('missing -o/--output: where to write the quantized model');
    const mode: Mode = oneOf('--mode', o['mode'], MODES, 'int8');
    const target = oneOf('--target', o['target'], ['ort', 'trt'] as const, 'ort');
    const calibrator = oneOf('--calibrator', o['calibrator'], ['minmax', 'percentile', 'entropy'] as const, 'minmax');
    const exclude = typeof o['exclude'] === 'string' ? parseRegex(o['exclude'], '--exclude') : undefined;
    if (mode !== 'int8') {
      for (const f of ['calib', 'calibrator', 'autoExclude', 'target', 'percentile']) {
        if (o[f] !== undefined) throw new ShearsError(`--${f.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} applies to --mode int8 only`);
      }
    }
    if (o['blockSize'] !== undefined && mode !== 'int4') throw new ShearsError('--block-size applies to --mode int4 only');
    const model = loadModel(modelPath);
    const progress = (msg: string) => process.stderr.write(`${msg}\n`);
    let out: Model;
    let report: unknown;
    switch (mode) {
      case 'int8': {
        const opts: StaticQuantOptions = target === 'trt' ? { ...TRT_OPTIONS } : {};
        opts.calibrator = calibrator;
        if (o['percentile'] !== undefined) opts.percentile = parseNumber(o['percentile'] as string, '--percentile', { min: 50, max: 100 });
        if (exclude) opts.exclude = exclude;
        if (o['perTensor']) opts.perTensor = true;
        if (typeof o['reduceRange'] === 'boolean') opts.reduceRange = o['reduceRange'];
        if (typeof o['autoExclude'] === 'number') opts.autoExclude = o['autoExclude'];
        let last = 0;
        opts.onProgress = (msg) => {
          const now = Date.now();
          if (now - last > 3000) {
            last = now;
            progress(msg);
          }
        };
        const size = typeof o['calibSize'] === 'number' ? o['calibSize'] : 256;
        const r = await quantizeStatic(model, await calibrationFrom(model, o, size), opts);
        out = r.model;
        report = target === 'trt' ? { ...r.report, target, sparsity24: sparsity24(r.model) } : { ...r.report, target };
        break;
      }
      case 'dynamic': {
        const r = quantizeDynamic(model, { ...(exclude ? { exclude } : {}), ...(o['perTensor'] ? { perTensor: true } : {}), ...(typeof o['reduceRange'] === 'boolean' ? { reduceRange: o['reduceRange'] } : {}) });
        out = r.model;
        report = r.report;
        break;
      }
      case 'int4': {
        const bs = o['blockSize'] === undefined ? 32 : parseNumber(o['blockSize'] as string, '--block-size', { integer: true });
        const r = quantizeInt4(model, { blockSize: bs, ...(exclude ? { exclude } : {}) });
        out = r.model;
        report = r.report;
        break;
      }
      case 'fp16': {
        const r = convertFp16(model, o['ioFp16'] ? { ioFp16: true } : {});
        out = r.model;
        report = r.report;
        break;
      }
    }
    // keep the preprocessing given by flags with the model, so later commands need not repeat it
    const pp = preprocessFor(model, preprocessFlags(o));
    if (pp.from === 'flags' || pp.from === 'metadata+flags') writePreprocess(out, pp.spec);
    const saved = saveModel(out, o['output']);
    const before = modelSizes(encodeModel(model));
    const after = modelSizes(encodeModel(out));
    const result: Record<string, unknown> = {
      model: modelPath,
      output: o['output'],
      ...(saved.externalFile ? { externalData: saved.externalFile } : {}),
      mode,
      size: { before, after, ratio: before.bytes / after.bytes },
      report,
    };
    if (mode !== 'fp16') {
      result['onnxruntime'] = await optimizedOpTypes(out);
    }
    if (typeof o['data'] === 'string') {
      const fb = await scoreOn(model, o);
      warnIfNearChance(fb, 'the float model');
      const fa = await scoreOn(out, o, model);
      result['before'] = { accuracy: fb.accuracy, samples: fb.samples };
      result['after'] = { accuracy: fa.accuracy, fidelity: fa.fidelity, samples: fa.samples };
    }
    if (o['json']) {
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      return;
    }
    const lines = [`${mode} model written to ${o['output']}`, `size: ${before.bytes} -> ${after.bytes} bytes (${(before.bytes / after.bytes).toFixed(2)}x smaller); gzip ${before.gzipBytes} -> ${after.gzipBytes}`];
    const rep = report as { quantized?: Record<string, number>; weightBits?: number; excluded?: { node: string; reason: string }[] };
    if (rep.quantized) lines.push(`quantized: ${Object.entries(rep.quantized).map(([k, v]) => `${k} ${v}`).join(', ')}${rep.weightBits ? ` (${rep.weightBits}-bit weights)` : ''}`);
    for (const e of rep.excluded ?? []) lines.push(`kept float: ${e.node} (${e.reason})`);
    const f = result['onnxruntime'] as { opTypes: Record<string, number> } | undefined;
    if (f) lines.push(`onnxruntime runs: ${Object.entries(f.opTypes).map(([k, v]) => `${k.replace(/^com\.microsoft\./, '')} ${v}`).join(', ')}`);
    if (mode === 'int8' && target === 'trt') {
      const s24 = (report as { sparsity24?: { violations: number; fits: boolean }[] }).sparsity24 ?? [];
      lines.push(`TensorRT form: symmetric int8 activations, Q/DQ on float weights; ${s24.filter((l) => l.fits && l.violations === 0).length} of ${s24.length} layer weights are 2:4 sparse`);
      lines.push('note: onnxruntime\'s x86 CPU provider does not fuse int8 activations (this model runs in float there)');
    }
    const b = result['before'] as { accuracy?: { top1: number } } | undefined;
    const a = result['after'] as { accuracy?: { top1: number }; fidelity?: Record<string, { agreement?: number; cosine: number }> } | undefined;
    if (b?.accuracy && a?.accuracy) lines.push(`top-1: ${(100 * b.accuracy.top1).toFixed(2)}% -> ${(100 * a.accuracy.top1).toFixed(2)}%`);
    for (const [name, fi] of Object.entries(a?.fidelity ?? {})) lines.push(`fidelity ${name}: cosine ${fi.cosine.toFixed(6)}${fi.agreement !== undefined ? `, top-1 agreement ${(100 * fi.agreement).toFixed(2)}%` : ''}`);
    process.stdout.write(`${lines.join('\n')}\n`);
  });
}
