/**
 * Samples for training and evaluation: held in memory when they fit, otherwise read from their Dataset batch by
 * batch (decoded and preprocessed per step), so detector-size images train without holding the set in memory.
 * Labels, when the data has them, are always in memory.
 */
import { ShearsError } from '../errors.js';
import { Dataset } from '../data/dataset.js';
import { DataType } from '../ir/dtype.js';
import { loadArrays, type ArrayData } from '../data/in-memory.js';

/** Samples kept in memory at most (floats: 1 GiB); larger data sets are read per batch. */
export const IN_MEMORY_MAX = 256 * 2 ** 20;

export class SampleStore {
  private readonly state = {};

  private constructor(
    readonly n: number,
    readonly sampleDims: number[],
    readonly labels: Int32Array | undefined,
    /** The samples when held in memory. */
    readonly inMemory: ArrayData | undefined,
    private readonly ds: Dataset | undefined,
  ) {}

  static fromArrays(d: ArrayData): SampleStore {
    return new SampleStore(d.n, d.sampleDims, d.labels, d, undefined);
  }

  /** The first `limit` samples of `ds` (all by default), in memory when they take at most `maxFloats`. */
  static async open(ds: Dataset, opts: { limit?: number; labels?: 'required' | 'optional'; maxFloats?: number } = {}): Promise<SampleStore> {
    if (ds.inputType !== DataType.FLOAT) throw new ShearsError(`${ds.description} is token data: fine-tune a language model with finetuneLM (train/lm.ts), which \`shears finetune\` runs on token data`);
    if (!ds.hasLabels && opts.labels !== 'optional') throw new ShearsError(`training data needs labels (${ds.description})`);
    const n = Math.min(ds.size, opts.limit ?? Infinity);
    if (n === 0) throw new ShearsError(`the data set is empty (${ds.description})`);
    const first = await ds.readBatch([0]);
    const sampleDims = first.x.dims.slice(1);
    const per = sampleDims.reduce((a, b) => a * b, 1);
    if (n * per <= (opts.maxFloats ?? IN_MEMORY_MAX)) {
      return SampleStore.fromArrays(await loadArrays(ds, n, { labels: opts.labels ?? 'required' }));
    }
    const src = ds.hasLabels ? Int32Array.from({ length: n }, (_, i) => ds.label(i)!) : undefined;
    return new SampleStore(n, sampleDims, src, undefined, ds);
  }

  /** The samples at positions `idx`, as an ArrayData of idx.length rows in that order. */
  async take(idx: ArrayLike<number>): Promise<ArrayData> {
    const per = this.sampleDims.reduce((a, b) => a * b, 1);
    const labels = this.labels ? Int32Array.from(idx, (i) => this.labels![i]!) : undefined;
    let x: Float32Array;
    if (this.inMemory) {
      x = new Float32Array(idx.length * per);
      for (let k = 0; k < idx.length; k++) x.set(this.inMemory.x.subarray(idx[k]! * per, (idx[k]! + 1) * per), k * per);
    } else {
      const b = await this.ds!.readBatch(Array.from(idx), this.state);
      x = b.x.data as Float32Array;
    }
    return { x, sampleDims: this.sampleDims, n: idx.length, ...(labels ? { labels } : {}) };
  }

  /** Consecutive runs of `size` samples (the last may be shorter): views when in memory. */
  async *chunks(size: number, end = this.n): AsyncGenerator<{ start: number; data: ArrayData }> {
    const per = this.sampleDims.reduce((a, b) => a * b, 1);
    for (let start = 0; start < end; start += size) {
      const n = Math.min(size, end - start);
      if (this.inMemory) {
        const labels = this.labels?.subarray(start, start + n);
        yield { start, data: { x: this.inMemory.x.subarray(start * per, (start + n) * per), sampleDims: this.sampleDims, n, ...(labels ? { labels } : {}) } };
      } else {
        yield { start, data: await this.take(Array.from({ length: n }, (_, i) => start + i)) };
      }
    }
  }
}

/** In memory when it fits (IN_MEMORY_MAX), else read batch by batch from the Dataset. */
export async function toStore(d: ArrayData | Dataset | SampleStore, labels: 'required' | 'optional' = 'required', maxFloats?: number): Promise<SampleStore> {
  if (d instanceof SampleStore) {
    if (!d.labels && labels === 'required') throw new ShearsError('training data needs labels');
    return d;
  }
  if (d instanceof Dataset) return SampleStore.open(d, { labels, ...(maxFloats !== undefined ? { maxFloats } : {}) });
  if (!d.labels && labels === 'required') throw new ShearsError('training data needs labels');
  return SampleStore.fromArrays(d);
}

