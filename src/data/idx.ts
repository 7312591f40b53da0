/**
 * IDX files (the MNIST / Fashion-MNIST / EMNIST family), plain or gzipped. Images are [N, H, W] (gray) or
 * [N, H, W, C]; labels are [N]. Labels are found beside the images by the standard naming
 * (train-images-idx3-ubyte[.gz] <-> train-labels-idx1-ubyte[.gz], t10k-..., also the 'images.idx3' variant).
 */
import { ShearsError } from '../errors.js';
import { platform } from '../fs/platform.js';
import { arraySource, inMemoryRows, toLabels, type NdArray } from './arrays.js';
import { gunzipCapped, gunzipHead, isGzip } from './inflate.js';
import { checkArrayBytes, checkSampleDims } from './limits.js';
import { isRegularFile, listNames, pathExists, readAll, readHead } from './read.js';
import type { Source } from './types.js';

const IDX_TYPES: Record<number, { bytes: number; name: string }> = {
  0x08: { bytes: 1, name: 'ubyte' },
  0x09: { bytes: 1, name: 'sbyte' },
  0x0b: { bytes: 2, name: 'short' },
  0x0c: { bytes: 4, name: 'int' },
  0x0d: { bytes: 4, name: 'float' },
  0x0e: { bytes: 8, name: 'double' },
};

/** What an IDX header states: dims, element type and the size of the whole file. */
interface IdxHeader {
  dims: number[];
  code: number;
  type: { bytes: number; name: string };
  headerLen: number;
  /** Bytes of the whole file (header and data) the header describes. */
  size: number;
}

/** The longest IDX header: rank 255. */
const MAX_HEADER = 4 + 4 * 255;

/** Parses the header at the start of `bytes` and refuses dims too large to hold in memory. */
function idxHeader(bytes: Uint8Array, what: string): IdxHeader {
  if (bytes.length < 4) throw new ShearsError(`'${what}' is not an IDX file (only ${bytes.length} bytes)`);
  const type = IDX_TYPES[bytes[2]!];
  if (bytes[0] !== 0 || bytes[1] !== 0 || !type || bytes[3] === 0) {
    const magic = [...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join('');
    throw new ShearsError(`'${what}' is not an IDX file: bad magic number 0x${magic} (expected 0x0000TTNN: TT the element type 08/09/0b/0c/0d/0e, NN the rank)`);
  }
  const rank = bytes[3]!;
  const headerLen = 4 + 4 * rank;
  if (bytes.length < headerLen) throw new ShearsError(`'${what}' is truncated: the IDX header needs ${headerLen} bytes, the file has ${bytes.length}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims: number[] = [];
  let n = 1;
  for (let i = 0; i < rank; i++) {
    const d = view.getUint32(4 + 4 * i, false);
    dims.push(d);
    n *= d;
  }
  // uint8 stays as it is; every other type is decoded to float32.
  checkArrayBytes(n * type.bytes, bytes[2] === 0x08 ? n : 4 * n, `dims [${dims.join(', ')}] of ${type.name}`, what);
  return { dims, code: bytes[2]!, type, headerLen, size: headerLen + n * type.bytes };
}

/** Refuses a file (or inflated data) of `length` bytes that does not hold exactly what its header describes. */
function checkLength(h: IdxHeader, length: number, what: string): void {
  if (length < h.size) {
    throw new ShearsError(`'${what}' is truncated: dims [${h.dims.join(', ')}] of ${h.type.name} need ${h.size} bytes, the file has ${length}`);
  }
  if (length > h.size) throw new ShearsError(`'${what}' has ${length - h.size} bytes after the data of dims [${h.dims.join(', ')}] (corrupt IDX file?)`);
}

/** Parses IDX bytes; `what` names the file in errors. */
export function parseIdx(bytes: Uint8Array, what: string): NdArray {
  const h = idxHeader(bytes, what);
  checkLength(h, bytes.length, what);
  const { dims, headerLen } = h;
  const n = (h.size - headerLen) / h.type.bytes;
  const body = bytes.subarray(headerLen, h.size);
  if (h.code === 0x08) return { dims, data: body };
  const out = new Float32Array(n);
  const bv = new DataView(body.buffer, body.byteOffset, body.byteLength);
  for (let i = 0; i < n; i++) {
    switch (h.code) {
      case 0x09: out[i] = bv.getInt8(i); break;
      case 0x0b: out[i] = bv.getInt16(2 * i, false); break;
      case 0x0c: out[i] = bv.getInt32(4 * i, false); break;
      case 0x0d: out[i] = bv.getFloat32(4 * i, false); break;
      default: out[i] = bv.getFloat64(8 * i, false);
    }
  }
  return { dims, data: out };
}

/**
 * Reads an IDX file, plain or gzipped. The header is read first, so a file whose header claims more (or less)
 * than it holds is refused before its data is read, and a gzipped one is inflated no further than that size.
 */
export function readIdx(path: string): NdArray {
  const { head, size } = readHead(path, MAX_HEADER);
  if (!isGzip(head)) {
    checkLength(idxHeader(head, path), size, path);
    return parseIdx(readAll(path), path);
  }
  const gz = readAll(path);
  const h = idxHeader(gunzipHead(gz, MAX_HEADER, path), path);
  const bytes = gunzipCapped(gz, h.size, path, `the size its IDX header describes (dims [${h.dims.join(', ')}] of ${h.type.name})`);
  return parseIdx(bytes, path);
}

/** The labels file that belongs to an images file by the standard naming, if it exists. */
export function findIdxLabels(imagesPath: string): string | undefined {
  const dir = platform().dirname(imagesPath);
  const base = platform().basename(imagesPath).replace(/\.gz$/i, '');
  const cand = base.replace(/images/g, 'labels').replace(/idx[34]/g, 'idx1');
  if (cand === base) return undefined;
  for (const name of [cand, `${cand}.gz`]) {
    const p = platform().join(dir, name);
    if (pathExists(p)) return p;
  }
  return undefined;
}

/** IDX image files in a directory: split name ('train', 't10k', ...) -> path. */
export function idxImageFiles(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const name of listNames(dir)) {
    const m = /^(.*?)[-.]?images[-.]idx[34][-.]ubyte(\.gz)?$/i.exec(name);
    if (m && isRegularFile(platform().join(dir, name))) {
      const split = m[1] || 'images';
      if (!out.has(split) || !m[2]) out.set(split, platform().join(dir, name));
    }
  }
  return out;
}

/** Picks the image file of a split in an IDX directory; without a split: the test split (t10k/test) if any. */
export function idxFileInDir(dir: string, split?: string): string {
  const files = idxImageFiles(dir);
  if (files.size === 0) throw new ShearsError(`'${dir}' holds no IDX image files (*-images-idx3-ubyte[.gz])`);
  if (split !== undefined) {
    const want = split === 'test' ? ['t10k', 'test'] : [split];
    for (const w of want) {
      const f = files.get(w);
      if (f) return f;
    }
    throw new ShearsError(`'${dir}' has no IDX split '${split}' (it has: ${[...files.keys()].join(', ')})`);
  }
  for (const w of ['t10k', 'test']) {
    const f = files.get(w);
    if (f) return f;
  }
  if (files.size === 1) return [...files.values()][0]!;
  throw new ShearsError(`'${dir}' holds several IDX splits (${[...files.keys()].join(', ')}): name one, e.g. '${dir}@${[...files.keys()][0]}'`);
}

/** An IDX data set: images file, labels file (found by name when not given; none is fine). */
export function idxSource(imagesPath: string, labelsPath?: string): Source {
  const arr = readIdx(imagesPath);
  checkSampleDims(arr.dims, imagesPath);
  const lp = labelsPath ?? findIdxLabels(imagesPath);
  let labels: Int32Array | undefined;
  if (lp) {
    const l = readIdx(lp);
    if (l.dims.length !== 1) throw new ShearsError(`'${lp}' is not an IDX labels file: dims [${l.dims.join(', ')}], expected [N]`);
    labels = toLabels(l.data, lp);
    if (labels.length !== arr.dims[0]) {
      throw new ShearsError(`labels/images count mismatch: '${imagesPath}' holds ${arr.dims[0]} images, '${lp}' ${labels.length} labels`);
    }
  }
  return arraySource(inMemoryRows(arr), labels, imagesPath, `idx ${imagesPath}${lp ? ` (labels ${lp})` : ' (no labels)'}`);
}
