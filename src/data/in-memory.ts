/** Data sets in memory: a whole data set as one float array, batches from it (with augmentation), one-hot targets. */
import { ShearsError } from '../errors.js';
import type { Dataset } from './dataset.js';
import { DataType } from '../ir/dtype.js';

export interface ArrayData {
  /** Preprocessed samples, [n, ...sampleDims] contiguous. */
  x: Float32Array;
  sampleDims: number[];
  /** Absent for unlabelled data (enough to distil from a teacher). */
  labels?: Int32Array;
  n: number;
}

/**
 * Reads a whole data set into memory (preprocessed, as the model input expects); labels are required unless
 * `labels: 'optional'`.
 */
export async function loadArrays(ds: Dataset, limit?: number, opts: { labels?: 'required' | 'optional' } = {}): Promise<ArrayData> {
  if (ds.inputType !== DataType.FLOAT) throw new ShearsError(`${ds.description} is token data: this takes image or array samples (language models: perplexity in eval, calibration in repair/quantize, fine-tuning with --steps)`);
  if (!ds.hasLabels && opts.labels !== 'optional') throw new ShearsError(`training data needs labels (${ds.description})`);
  const n = Math.min(ds.size, limit ?? Infinity);
  let x: Float32Array | undefined;
  let sampleDims: number[] = [];
  const labels = ds.hasLabels ? new Int32Array(n) : undefined;
  let per = 0;
  let at = 0;
  for await (const b of ds.batches(4096, limit !== undefined ? { limit } : {})) {
    if (!x) {
      sampleDims = b.x.dims.slice(1);
      per = sampleDims.reduce((a, c) => a * c, 1);
      x = new Float32Array(n * per);
    }
    x.set(b.x.data as Float32Array, at * per);
    labels?.set(b.labels!, at);
    at += b.x.dims[0]!;
  }
  if (!x) throw new ShearsError(`the data set is empty (${ds.description})`);
  return { x, sampleDims, ...(labels ? { labels } : {}), n };
}

export interface AugmentSpec {
  /** Random crop after zero-padding by this many pixels on each side (0: off). */
  cropPad?: number;
  /** Random horizontal flip (for natural images; not for digits/text). */
  flip?: boolean;
}

/** An augmentation list as the CLI and recipes write it: 'crop[:PAD],flip' (or 'none'). */
export function parseAugment(s: string): AugmentSpec {
  const out: AugmentSpec = {};
  for (const part of s.split(',').filter(Boolean)) {
    const [k, v] = part.split(':');
    if (k === 'flip') out.flip = true;
    else if (k === 'crop') {
      const p = Number(v ?? 4);
      if (!Number.isInteger(p) || p < 0) throw new ShearsError(`augmentation crop:P needs an integer padding, not '${part}'`);
      out.cropPad = p;
    } else if (k !== 'none') throw new ShearsError(`unknown augmentation '${part}' (crop[:PAD], flip, none)`);
  }
  return out;
}

/**
 * Copies samples `idx` into xOut ([B, C, H, W] for images), with augmentation when given. Padding uses
 * `padValue` (the preprocessed value of a black pixel).
 */
export function fillBatch(data: ArrayData, idx: ArrayLike<number>, xOut: Float32Array, aug: AugmentSpec | undefined, rand: () => number, padValue: number): void {
  const per = data.sampleDims.reduce((a, c) => a * c, 1);
  const pad = aug?.cropPad ?? 0;
  const flip = aug?.flip ?? false;
  if ((pad === 0 && !flip) || data.sampleDims.length !== 3) {
    for (let k = 0; k < idx.length; k++) xOut.set(data.x.subarray(idx[k]! * per, (idx[k]! + 1) * per), k * per);
    return;
  }
  const [c, h, w] = data.sampleDims as [number, number, number];
  for (let k = 0; k < idx.length; k++) {
    const src = idx[k]! * per;
    const dy = pad ? Math.floor(rand() * (2 * pad + 1)) - pad : 0;
    const dx = pad ? Math.floor(rand() * (2 * pad + 1)) - pad : 0;
    const f = flip && rand() < 0.5;
    const dst = k * per;
    for (let ch = 0; ch < c; ch++) {
      for (let y = 0; y < h; y++) {
        const sy = y + dy;
        const row = dst + (ch * h + y) * w;
        if (sy < 0 || sy >= h) {
          xOut.fill(padValue, row, row + w);
          continue;
        }
        const srow = src + (ch * h + sy) * w;
        for (let x = 0; x < w; x++) {
          const xx = f ? w - 1 - x : x;
          const sx = xx + dx;
          xOut[row + x] = sx < 0 || sx >= w ? padValue : data.x[srow + sx]!;
        }
      }
    }
  }
}

/** One-hot targets with label smoothing (eps spread uniformly over the classes, as PyTorch does). */
export function fillTargets(labels: Int32Array, idx: ArrayLike<number>, out: Float32Array, classes: number, smoothing = 0): void {
  const off = smoothing / classes;
  out.fill(off);
  for (let k = 0; k < idx.length; k++) {
    const y = labels[idx[k]!]!;
    if (y < 0 || y >= classes) throw new ShearsError(`label ${y} is outside the model's ${classes} classes`);
    out[k * classes + y] = 1 - smoothing + off;
  }
}
