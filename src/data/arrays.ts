/** Arrays of samples (IDX, npy, npz; in memory or read row by row from disk) as data sources. */
import { ShearsError } from '../errors.js';
import type { RawSample, Source } from './types.js';

export interface NdArray {
  dims: number[];
  /** uint8 data stays Uint8Array; every other element type is converted to float32. */
  data: Uint8Array | Float32Array;
}

/** Rows of an array: dims [N, ...] and a reader of row i (an in-memory slice, or bytes read from a file). */
export interface Rows {
  dims: number[];
  row(i: number): Uint8Array | Float32Array;
}

export function inMemoryRows(arr: NdArray): Rows {
  const per = arr.dims.slice(1).reduce((a, b) => a * b, 1);
  return { dims: arr.dims, row: (i) => arr.data.subarray(i * per, (i + 1) * per) };
}

/** Converts a labels array (any numeric element type) to int32 class indices, checking they are integers. */
export function toLabels(data: ArrayLike<number>, what: string): Int32Array {
  const out = new Int32Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (!Number.isInteger(v) || v < 0) throw new ShearsError(`'${what}': label ${i} is ${v}, not a class index`);
    out[i] = v;
  }
  return out;
}

export type ArrayLayout = 'hw' | 'hwc' | 'chw' | 'tensor';

/**
 * How the per-sample part of an array reads: [N, H, W] gray images; [N, C, H, W] with C in 1, 3 (CHW) or
 * [N, H, W, C] with C in 1, 3, 4 (HWC) images (1 or 3 channels first win over 4 last; when both ends are 1 or 3,
 * HWC; `layout` forces one); anything else tensors.
 */
export function arrayLayout(dims: readonly number[], layout?: 'nchw' | 'nhwc'): ArrayLayout {
  if (dims.length === 3) return 'hw';
  if (dims.length !== 4) return 'tensor';
  if (layout === 'nhwc') return 'hwc';
  if (layout === 'nchw') return 'chw';
  const first = [1, 3].includes(dims[1]!);
  const last = [1, 3].includes(dims[3]!);
  if (first && !last) return 'chw'; // [N, 3, H, W], also [N, 3, 4, 4]: 1 or 3 channels beat RGBA
  if (last) return 'hwc';
  if (dims[3] === 4) return 'hwc'; // RGBA
  return 'tensor';
}

export function arraySource(rows: Rows, labels: Int32Array | undefined, what: string, description: string, layout?: 'nchw' | 'nhwc'): Source {
  const dims = rows.dims;
  if (dims.length < 1 || dims[0] === 0) throw new ShearsError(`'${what}' holds no samples (dims [${dims.join(', ')}])`);
  const n = dims[0]!;
  if (labels && labels.length !== n) {
    throw new ShearsError(`labels/images count mismatch: '${what}' holds ${n} samples, the labels ${labels.length}`);
  }
  const kind = arrayLayout(dims, layout);
  const sample = (i: number): RawSample => {
    const data = rows.row(i);
    const array = { dims: dims.slice(1), data };
    if (kind === 'hw') return { kind: 'image', image: { height: dims[1]!, width: dims[2]!, channels: 1, data, array } };
    if (kind === 'hwc') return { kind: 'image', image: { height: dims[1]!, width: dims[2]!, channels: dims[3]!, data, array } };
    if (kind === 'chw') {
      const [c, h, w] = [dims[1]!, dims[2]!, dims[3]!];
      const out = data instanceof Uint8Array ? new Uint8Array(data.length) : new Float32Array(data.length);
      for (let ch = 0; ch < c; ch++) for (let p = 0; p < h * w; p++) out[p * c + ch] = data[ch * h * w + p]!;
      return { kind: 'image', image: { height: h, width: w, channels: c, data: out, array } };
    }
    return { kind: 'tensor', dims: dims.slice(1), data: data instanceof Float32Array ? data : Float32Array.from(data) };
  };
  return {
    size: n,
    labels,
    description,
    async read(indices) {
      return indices.map((i) => {
        if (!Number.isInteger(i) || i < 0 || i >= n) throw new ShearsError(`sample index ${i} is outside '${what}' (${n} samples)`);
        return sample(i);
      });
    },
    itemName: (i) => `${what}[${i}]`,
  };
}
