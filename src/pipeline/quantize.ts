/**
 * The quantize step (quant/): static int8 QDQ calibrated on the calibration data (or on random inputs for
 * random-weight models), dynamic int8, weight-only int4 or fp16.
 */
import type { Model } from '../ir/graph.js';
import { encodeModel } from '../onnx/codec.js';
import { calibrationBatch, convertFp16, datasetCalibration, quantizeDynamic, quantizeInt4, quantizeStatic, randomCalibration, type CalibrationData } from '../quant/index.js';
import type { RunContext } from './context.js';
import { withDefaults } from './options.js';
import { QUANTIZE_OPTIONS, type QuantizeStep } from './steps.js';

export interface QuantizeSummary {
  mode: QuantizeStep['mode'];
  /** What was quantized ('Conv 21, Add 9', '4 matrix products', ...). */
  quantized: string;
  bytesBefore: number;
  bytesAfter: number;
}

async function calibration(ctx: RunContext, model: Model, spec: string, size: number): Promise<CalibrationData> {
  if (spec === 'random') {
    ctx.emit({ type: 'warning', message: 'calibrating on random normal inputs: use only for random-weight models (speed/structure checks)' });
    const bs = calibrationBatch(model, 8);
    return randomCalibration(model, Math.max(1, Math.ceil(size / bs)), bs);
  }
  return datasetCalibration(model, await ctx.data('quantize.calib', spec), size);
}

export async function runQuantize(ctx: RunContext, model: Model, step: QuantizeStep): Promise<{ model: Model; report: QuantizeSummary }> {
  const s = withDefaults(QUANTIZE_OPTIONS, step);
  const exclude = s.exclude !== undefined ? { exclude: new RegExp(s.exclude) } : {};
  let out: Model;
  let what: string;
  if (s.mode === 'int8') {
    const r = await quantizeStatic(model, await calibration(ctx, model, s.calib!, s.calibSize), { calibrator: s.calibrator, ...exclude });
    out = r.model;
    what = Object.entries(r.report.quantized).map(([k, v]) => `${k} ${v}`).join(', ');
  } else if (s.mode === 'dynamic') {
    const r = quantizeDynamic(model, exclude);
    out = r.model;
    what = `${r.report.quantizedNodes.length} matrix products`;
  } else if (s.mode === 'int4') {
    const r = quantizeInt4(model, exclude);
    out = r.model;
    what = `${r.report.quantizedNodes.length} matrix products`;
  } else {
    out = convertFp16(model).model;
    what = 'all float tensors';
  }
  ctx.storePreprocess(out);
  const bytesBefore = encodeModel(model).byteLength;
  const bytesAfter = encodeModel(out).byteLength;
  ctx.emit({ type: 'info', message: `quantized (${s.mode}: ${what}); ${bytesBefore} -> ${bytesAfter} bytes` });
  return { model: out, report: { mode: s.mode, quantized: what, bytesBefore, bytesAfter } };
}
