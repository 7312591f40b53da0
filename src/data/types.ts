/** Datasets as streaming sources of preprocessed batches. */
import type { Tensor } from '../ir/tensor.js';

/** A decoded image before preprocessing: height x width x channels, interleaved (HWC). */
export interface RawImage {
  width: number;
  height: number;
  /** 1 (gray), 3 (RGB) or 4 (RGBA). */
  channels: number;
  /** uint8 pixels (0..255) or floats as stored in the source (npy). */
  data: Uint8Array | Float32Array;
  /** For an image read from an array (npy, npz, IDX): the array row as stored (per-sample dims and values). */
  array?: { dims: number[]; data: Uint8Array | Float32Array };
}

/**
 * One sample as a source holds it: an image (to be preprocessed), or a tensor (npy arrays that are not images,
 * e.g. feature vectors; passed through unchanged).
 */
export type RawSample =
  | { kind: 'image'; image: RawImage }
  | { kind: 'tensor'; dims: number[]; data: Float32Array };

/**
 * Random access to the raw samples of a data set. `read` returns samples in the order asked; it may read files
 * (folders, npy files on disk), so large sets never need to be held in memory at once.
 */
export interface Source {
  readonly size: number;
  /** Labels of all samples when the source has them (class indices). */
  readonly labels: Int32Array | undefined;
  /** Class names (folder data sets), index = label. */
  readonly classes?: string[];
  /** One line saying where the data comes from. */
  readonly description: string;
  read(indices: readonly number[]): Promise<RawSample[]>;
  /** A name for sample i in error messages: a file path, or 'FILE[i]'. */
  itemName(i: number): string;
}

export interface Batch {
  /** Preprocessed inputs: float32, [B, C, H, W] (or [B, H, W, C] with layout nhwc). */
  x: Tensor;
  labels?: Int32Array;
  /** Indices of the samples in the data set. */
  indices: Int32Array;
  /** Original sizes of image samples before preprocessing: (height, width) per sample (0, 0 for tensors). */
  sizes?: Int32Array;
  /** Token data (data/tokens.ts): the next token of every input position, [B, T] row-major. */
  targets?: Int32Array;
  /** The same samples' rows of the data sets that feed the model's other inputs (--feed NAME=npy:...), by input. */
  feeds?: Record<string, Tensor>;
}

export interface BatchOptions {
  /** Visit samples in a seeded random order (default false: file order). */
  shuffle?: boolean;
  /** Seed for the shuffle (default 0). */
  seed?: number;
  /** At most this many samples. */
  limit?: number;
}
