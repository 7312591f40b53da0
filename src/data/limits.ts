/**
 * Size limits on data files, so that a corrupt or hostile file (a header claiming billions of items, a
 * decompression bomb, a 50000x50000 PNG) is refused with a clear error instead of exhausting memory.
 */
import { ShearsError } from '../errors.js';
import { bytes } from '../units.js';

/**
 * The most bytes one array held in memory may take, as stored or as decoded (IDX files, npz members, npy
 * labels, one row of an npy file): 2 GiB. Larger data sets belong in an .npy file, which is read row by row.
 */
export const MAX_ARRAY_BYTES = 2 ** 31;

/** The most pixels one image may have to be decoded: 100 megapixels (400 MB as RGBA). */
export const MAX_IMAGE_PIXELS = 100_000_000;

/** The most samples a data set may hold (sample indices are int32). */
const MAX_SAMPLES = 2 ** 31 - 1;

/**
 * Refuses an array read into memory whose size as stored (`stored` bytes) or decoded (`decoded` bytes) is over
 * the limit; `claim` says what the file's header claims ('dims [...]').
 */
export function checkArrayBytes(stored: number, decoded: number, claim: string, what: string): void {
  const size = Math.max(stored, decoded);
  if (size > MAX_ARRAY_BYTES) {
    throw new ShearsError(`'${what}' claims ${claim} (${bytes(size)}), more than the ${bytes(MAX_ARRAY_BYTES)} an array read into memory may take (corrupt header?)`);
  }
}

/** Refuses arrays of samples that hold no values each, or more samples than a data set can index. */
export function checkSampleDims(dims: readonly number[], what: string): void {
  if (dims.length > 1 && dims.slice(1).some((d) => d === 0)) {
    throw new ShearsError(`'${what}' holds samples of no values (dims [${dims.join(', ')}])`);
  }
  if ((dims[0] ?? 0) > MAX_SAMPLES) throw new ShearsError(`'${what}' claims ${dims[0]} samples, more than the ${MAX_SAMPLES} a data set may hold`);
}
