/**
 * Calibration: runs the float model on sample inputs through onnxruntime with the tensors of interest added as
 * extra graph outputs (typeless value infos: onnxruntime infers their types), and reduces each tensor to a
 * range [lo, hi] with one of three observers:
 * - minmax: the extreme values seen;
 * - percentile: the p-th and (100-p)-th percentiles of a 2048-bin histogram (clips rare outliers);
 * - entropy: the clipping threshold that minimises KL(P || Q) between the histogram of |x| and its quantized
 *   version (TensorRT's calibration), with 128 levels for signed tensors and 256 for non-negative ones; exact
 *   zeros are left out of the histogram (zero is exact, and a Relu's zero spike biases the search to tight
 *   thresholds). KL is still pulled by other spikes (constant image backgrounds): minmax/percentile are safer.
 * Percentile and entropy take two passes over the data (the first finds the histogram range).
 */
import { ShearsError } from '../errors.js';
import type { Model } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import { createSession } from '../runtime/session.js';

export type Calibrator = 'minmax' | 'percentile' | 'entropy';

export interface CalibrationOptions {
  calibrator?: Calibrator;
  /** Percentile kept by 'percentile' (default 99.99). */
  percentile?: number;
  /** Histogram bins for percentile/entropy (default 2048). */
  bins?: number;
  threads?: number;
  onProgress?: (msg: string) => void;
  /**
   * Tensors that keep their full min/max range whatever the calibrator. quantizeStatic puts the graph inputs
   * (clipping the data itself; images with a constant background make a spike that drags the KL threshold down)
   * and the graph outputs (clipping logits reorders them) here.
   */
  fullRange?: ReadonlySet<string>;
}

/** Calibration inputs: feeds (input name -> tensor), iterated once per pass. */
export type CalibrationData = () => AsyncIterable<Record<string, Tensor>> | Iterable<Record<string, Tensor>>;

export interface TensorRange {
  lo: number;
  hi: number;
}

/** Model with `names` added as extra (typeless) outputs. */
function withOutputs(model: Model, names: readonly string[]): Model {
  const have = new Set(model.graph.outputs.map((o) => o.name));
  const extra = names.filter((n) => !have.has(n)).map((name) => ({ name }));
  return { ...model, graph: { ...model.graph, outputs: [...model.graph.outputs, ...extra] } };
}

function floatData(t: Tensor, name: string): Float32Array {
  if (!(t.data instanceof Float32Array)) throw new ShearsError(`tensor '${name}' is not float32; only float tensors are quantized`);
  return t.data;
}

/** Ranges of `names` over the calibration data. */
export async function calibrate(model: Model, names: readonly string[], data: CalibrationData, opts: CalibrationOptions = {}): Promise<Map<string, TensorRange>> {
  const method = opts.calibrator ?? 'minmax';
  const bins = opts.bins ?? 2048;
  const runner = await createSession(withOutputs(model, names), opts.threads ? { threads: opts.threads } : {});
  const lo = new Map<string, number>();
  const hi = new Map<string, number>();
  const hist = new Map<string, Float64Array>();
  const absMax = new Map<string, number>();
  const pass = async (visit: (name: string, x: Float32Array) => void, label: string) => {
    let batches = 0;
    for await (const feeds of data()) {
      const out = await runner.run(feeds, [...names]);
      for (const n of names) {
        const t = out[n];
        if (!t) throw new ShearsError(`calibration: onnxruntime returned no tensor '${n}'`);
        visit(n, floatData(t, n));
      }
      batches++;
      opts.onProgress?.(`${label}: batch ${batches}`);
    }
    if (batches === 0) throw new ShearsError('calibration data is empty');
  };
  try {
    await pass((n, x) => {
      let a = lo.get(n) ?? Infinity;
      let b = hi.get(n) ?? -Infinity;
      for (let i = 0; i < x.length; i++) {
        const v = x[i]!;
        if (v < a) a = v;
        if (v > b) b = v;
      }
      if (Number.isNaN(a) || Number.isNaN(b)) throw new ShearsError(`calibration: tensor '${n}' holds NaN`);
      lo.set(n, a);
      hi.set(n, b);
    }, 'calibration (min/max)');
    if (method === 'minmax') return new Map(names.map((n) => [n, { lo: lo.get(n)!, hi: hi.get(n)! }]));
    for (const n of names) {
      absMax.set(n, Math.max(Math.abs(lo.get(n)!), Math.abs(hi.get(n)!)));
      hist.set(n, new Float64Array(method === 'percentile' ? 2 * bins : bins));
    }
    await pass((n, x) => {
      const h = hist.get(n)!;
      const m = absMax.get(n)!;
      if (m === 0) return;
      if (method === 'percentile') {
        // signed histogram over [-m, m]
        const k = bins / m;
        for (let i = 0; i < x.length; i++) h[Math.min(2 * bins - 1, Math.floor((x[i]! + m) * k))]! += 1;
      } else {
        // exact zeros (Relu outputs, padding) are skipped: zero is exactly representable, and a spike in the
        // first bin would push the KL search towards tight thresholds
        const k = bins / m;
        for (let i = 0; i < x.length; i++) {
          const v = x[i]!;
          if (v !== 0) h[Math.min(bins - 1, Math.floor(Math.abs(v) * k))]! += 1;
        }
      }
    }, `calibration (${method} histograms)`);
  } finally {
    await runner.release();
  }
  const out = new Map<string, TensorRange>();
  for (const n of names) {
    const a = lo.get(n)!, b = hi.get(n)!, m = absMax.get(n)!, h = hist.get(n)!;
    if (m === 0 || opts.fullRange?.has(n)) {
      out.set(n, { lo: a, hi: b });
      continue;
    }
    if (method === 'percentile') out.set(n, percentileRange(h, m, opts.percentile ?? 99.99, a, b));
    else {
      const t = entropyThreshold(h, a >= 0 ? 256 : 128) * m / h.length;
      out.set(n, { lo: Math.max(a, -t), hi: Math.min(b, t) });
    }
  }
  return out;
}

/** Range holding the central p% of a signed histogram over [-m, m] (never wider than the seen [lo, hi]). */
export function percentileRange(h: Float64Array, m: number, p: number, lo: number, hi: number): TensorRange {
  let total = 0;
  for (const v of h) total += v;
  const tail = (total * (100 - p)) / 100 / (lo < 0 ? 2 : 1);
  const width = (2 * m) / h.length;
  let acc = 0;
  let i = 0;
  if (lo < 0) for (; i < h.length && acc + h[i]! <= tail; i++) acc += h[i]!;
  let j = h.length - 1;
  acc = 0;
  for (; j > i && acc + h[j]! <= tail; j--) acc += h[j]!;
  return { lo: Math.max(lo, -m + i * width), hi: Math.min(hi, -m + (j + 1) * width) };
}

/**
 * TensorRT's entropy calibration on a histogram of |x|: the number of bins i (>= levels) whose clipped
 * distribution P (outliers added to the last bin) is best approximated, in KL divergence, by its
 * quantization to `levels` levels. Returns i (the threshold is i bin widths).
 */
export function entropyThreshold(h: Float64Array, levels: number): number {
  const n = h.length;
  if (n <= levels) return n;
  let best = n;
  let bestKl = Infinity;
  // suffix sums: outliers beyond bin i
  const suffix = new Float64Array(n + 1);
  for (let i = n - 1; i >= 0; i--) suffix[i] = suffix[i + 1]! + h[i]!;
  const p = new Float64Array(n);
  const q = new Float64Array(n);
  for (let i = levels; i <= n; i += Math.max(1, Math.floor(n / 1024))) {
    for (let k = 0; k < i; k++) p[k] = h[k]!;
    p[i - 1] = p[i - 1]! + suffix[i]!;
    // quantize h[0:i] into `levels` merged bins, then expand over the nonzero source bins
    const per = i / levels;
    for (let j = 0; j < levels; j++) {
      const start = Math.floor(j * per);
      const end = j === levels - 1 ? i : Math.floor((j + 1) * per);
      let sum = 0;
      let nz = 0;
      for (let k = start; k < end; k++) {
        sum += h[k]!;
        if (h[k]! !== 0) nz++;
      }
      for (let k = start; k < end; k++) q[k] = h[k]! !== 0 ? sum / nz : 0;
    }
    let ps = 0, qs = 0;
    for (let k = 0; k < i; k++) {
      ps += p[k]!;
      qs += q[k]!;
    }
    if (ps === 0 || qs === 0) continue;
    let kl = 0;
    for (let k = 0; k < i; k++) {
      const pk = p[k]! / ps;
      if (pk === 0) continue;
      const qk = q[k]! / qs;
      kl += qk === 0 ? pk * 1e4 : pk * Math.log(pk / qk);
    }
    if (kl < bestKl) {
      bestKl = kl;
      best = i;
    }
  }
  return best;
}
