/**
 * NumPy .npy arrays (a small text header + raw little- or big-endian data) and .npz archives (a zip of .npy
 * files). A .npy file is read row by row from disk, so a large one is never held in memory at once.
 */
import { ShearsError } from '../errors.js';
import { arraySource, inMemoryRows, toLabels, type NdArray, type Rows } from './arrays.js';
import { unzipCapped, zipNames } from './inflate.js';
import { checkArrayBytes, checkSampleDims } from './limits.js';
import { readAll, readHead, readRange } from './read.js';
import type { Source } from './types.js';
import { halfToFloat } from '../ir/tensor.js';

export interface NpyHeader {
  /** numpy dtype string, e.g. '<f4', '|u1'. */
  descr: string;
  fortranOrder: boolean;
  shape: number[];
  /** Byte offset of the data. */
  dataOffset: number;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
/** The longest header read (numpy itself refuses headers over 10000 bytes unless told otherwise). */
const MAX_HEADER_TEXT = 65536;
/** Bytes at the start of a file that hold any header shears reads. */
const HEAD_BYTES = 12 + MAX_HEADER_TEXT;

/** Parses the header at the start of `bytes` (which may be just the first few hundred bytes of the file). */
export function parseNpyHeader(bytes: Uint8Array, what: string): NpyHeader {
  if (bytes.length < 10 || MAGIC.some((m, i) => bytes[i] !== m)) throw new ShearsError(`'${what}' is not a .npy file (bad magic)`);
  const major = bytes[6]!;
  let hlen: number;
  let start: number;
  if (major === 1) {
    hlen = bytes[8]! | (bytes[9]! << 8);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw new ShearsError(`'${what}' is truncated (npy header)`);
    hlen = (bytes[8]! | (bytes[9]! << 8) | (bytes[10]! << 16)) + bytes[11]! * 2 ** 24;
    start = 12;
  } else throw new ShearsError(`'${what}': unsupported .npy format version ${major}`);
  if (hlen > MAX_HEADER_TEXT) throw new ShearsError(`'${what}': the .npy header claims ${hlen} bytes, more than the ${MAX_HEADER_TEXT} shears reads (corrupt file?)`);
  if (bytes.length < start + hlen) throw new ShearsError(`'${what}' is truncated (npy header of ${hlen} bytes)`);
  const text = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(start, start + hlen));
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(text)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(text)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(text)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    const shown = text.trim();
    throw new ShearsError(`'${what}': cannot read the .npy header ${JSON.stringify(shown.length > 200 ? `${shown.slice(0, 200)}...` : shown)}`);
  }
  const shape = shapeText.split(',').map((s) => s.trim()).filter((s) => s !== '').map((s) => Number(s.replace(/L$/, '')));
  if (shape.some((d) => !Number.isSafeInteger(d) || d < 0)) throw new ShearsError(`'${what}': bad shape (${shapeText}) in the .npy header`);
  return { descr, fortranOrder: fortran === 'True', shape, dataOffset: start + hlen };
}

interface ElemType {
  bytes: number;
  get(v: DataView, off: number, little: boolean): number;
}

const ELEM: Record<string, ElemType> = {
  u1: { bytes: 1, get: (v, o) => v.getUint8(o) },
  i1: { bytes: 1, get: (v, o) => v.getInt8(o) },
  b1: { bytes: 1, get: (v, o) => v.getUint8(o) },
  u2: { bytes: 2, get: (v, o, l) => v.getUint16(o, l) },
  i2: { bytes: 2, get: (v, o, l) => v.getInt16(o, l) },
  u4: { bytes: 4, get: (v, o, l) => v.getUint32(o, l) },
  i4: { bytes: 4, get: (v, o, l) => v.getInt32(o, l) },
  u8: { bytes: 8, get: (v, o, l) => Number(v.getBigUint64(o, l)) },
  i8: { bytes: 8, get: (v, o, l) => Number(v.getBigInt64(o, l)) },
  f2: { bytes: 2, get: (v, o, l) => halfToFloat(v.getUint16(o, l)) },
  f4: { bytes: 4, get: (v, o, l) => v.getFloat32(o, l) },
  f8: { bytes: 8, get: (v, o, l) => v.getFloat64(o, l) },
};

function elemType(h: NpyHeader, what: string): { t: ElemType; little: boolean; u8: boolean } {
  const m = /^([<>|=])?([uifb])(\d+)$/.exec(h.descr);
  const t = m ? ELEM[`${m[2]}${m[3]}`] : undefined;
  if (!m || !t) throw new ShearsError(`'${what}': unsupported .npy dtype '${h.descr}' (numeric types only)`);
  if (h.fortranOrder && h.shape.length > 1) throw new ShearsError(`'${what}' is in Fortran order; save it C-ordered (np.ascontiguousarray)`);
  return { t, little: m[1] !== '>', u8: m[2] === 'u' && m[3] === '1' };
}

/** Element type and sizes of an array as its header describes it. */
interface NpyLayout {
  e: { t: ElemType; little: boolean; u8: boolean };
  /** Elements. */
  n: number;
  /** Bytes of the whole file: header and data. */
  size: number;
}

/** The layout of an array read into memory as a whole (refused when it would be too large). */
function inMemory(h: NpyHeader, what: string): NpyLayout {
  const e = elemType(h, what);
  const n = h.shape.reduce((a, b) => a * b, 1);
  checkArrayBytes(n * e.t.bytes, e.u8 ? n : 4 * n, `shape (${h.shape.join(', ')}) of ${h.descr}`, what);
  return { e, n, size: h.dataOffset + n * e.t.bytes };
}

/** Decodes `n` elements: uint8 as a Uint8Array view, everything else as float32. */
function decode(bytes: Uint8Array, n: number, e: { t: ElemType; little: boolean; u8: boolean }): Uint8Array | Float32Array {
  if (e.u8) return bytes.subarray(0, n);
  const out = new Float32Array(n);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (e.t === ELEM['f4'] && e.little) {
    for (let i = 0; i < n; i++) out[i] = v.getFloat32(4 * i, true);
    return out;
  }
  for (let i = 0; i < n; i++) out[i] = e.t.get(v, i * e.t.bytes, e.little);
  return out;
}

/** Parses a whole .npy file held in memory. */
export function parseNpy(bytes: Uint8Array, what: string): NdArray {
  const h = parseNpyHeader(bytes, what);
  const { e, n, size } = inMemory(h, what);
  if (bytes.length < size) throw new ShearsError(`'${what}' is truncated: shape (${h.shape.join(', ')}) of ${h.descr} needs ${size} bytes, there are ${bytes.length}`);
  return { dims: h.shape, data: decode(bytes.subarray(h.dataOffset, size), n, e) };
}

/** Rows of a .npy file read from disk on demand (the file is opened per read, so nothing leaks). */
export function npyFileRows(path: string): Rows {
  const { head, size } = readHead(path, HEAD_BYTES);
  const h = parseNpyHeader(head, path);
  const e = elemType(h, path);
  if (h.shape.length === 0) throw new ShearsError(`'${path}' holds a scalar, not an array of samples`);
  checkSampleDims(h.shape, path);
  const per = h.shape.slice(1).reduce((a, b) => a * b, 1);
  checkArrayBytes(per * e.t.bytes, e.u8 ? per : 4 * per, `samples of shape (${h.shape.slice(1).join(', ')}) of ${h.descr} each`, path);
  const need = h.dataOffset + h.shape[0]! * per * e.t.bytes;
  if (size < need) throw new ShearsError(`'${path}' is truncated: shape (${h.shape.join(', ')}) of ${h.descr} needs ${need} bytes, the file has ${size}`);
  const rowBytes = per * e.t.bytes;
  return {
    dims: h.shape,
    row(i) {
      const buf = readRange(path, h.dataOffset + i * rowBytes, rowBytes);
      if (buf.length < rowBytes) throw new ShearsError(`'${path}' was truncated while being read (row ${i})`);
      return decode(buf, per, e);
    },
  };
}

/**
 * Arrays of an .npz archive held in memory (name without '.npy' -> array): those named in `keys`. Each
 * member is inflated no further than its npy header describes, and together they must fit the in-memory limit.
 */
function npzArrays(zip: Uint8Array, path: string, keys: readonly string[]): Map<string, NdArray> {
  const wanted = new Set(keys.map((k) => `${k}.npy`));
  let total = 0;
  const members = unzipCapped(zip, path, {
    keep: (name) => wanted.has(name),
    headBytes: HEAD_BYTES,
    limit: (name, head) => {
      const size = inMemory(parseNpyHeader(head, `${path}:${name}`), `${path}:${name}`).size;
      total += size;
      checkArrayBytes(total, total, `arrays ${[...wanted].join(', ')} together`, path);
      return size;
    },
  });
  const out = new Map<string, NdArray>();
  for (const name of wanted) {
    const b = members.get(name);
    if (!b) throw new ShearsError(`'${path}': member '${name}' is in the archive's directory but not in its data (corrupt zip)`);
    out.set(name.slice(0, -4), parseNpy(b, `${path}:${name}`));
  }
  return out;
}

/** The names of the arrays in an .npz archive (its .npy members, without '.npy'). */
function npzKeys(zip: Uint8Array, path: string): string[] {
  const keys = zipNames(zip, path).filter((n) => n.endsWith('.npy')).map((n) => n.slice(0, -4));
  if (keys.length === 0) throw new ShearsError(`'${path}' holds no .npy arrays`);
  return keys;
}

/** Reads all arrays of an .npz archive (name without '.npy' -> array). */
export function readNpz(path: string): Map<string, NdArray> {
  const zip = readAll(path);
  return npzArrays(zip, path, npzKeys(zip, path));
}

const X_KEYS = ['x', 'X', 'images', 'image', 'data', 'inputs', 'input', 'arr_0'];
const Y_KEYS = ['y', 'Y', 'labels', 'label', 'targets', 'target', 'arr_1'];

function labelsFrom(arr: NdArray, what: string): Int32Array {
  if (arr.dims.length !== 1) throw new ShearsError(`'${what}' is not a labels array: shape (${arr.dims.join(', ')}), expected (N,)`);
  return toLabels(arr.data, what);
}

/** A .npy data set, with an optional labels .npy. */
export function npySource(path: string, labelsPath?: string, layout?: 'nchw' | 'nhwc'): Source {
  const rows = npyFileRows(path);
  const labels = labelsPath ? labelsFrom(parseNpy(readAll(labelsPath), labelsPath), labelsPath) : undefined;
  if (labels && labels.length !== rows.dims[0]) {
    throw new ShearsError(`labels/images count mismatch: '${path}' holds ${rows.dims[0]} samples, '${labelsPath}' ${labels.length} labels`);
  }
  return arraySource(rows, labels, path, `npy ${path} (${rows.dims.join('x')})${labelsPath ? ` labels ${labelsPath}` : ''}`, layout);
}

/**
 * An .npz data set. The samples are the array named `xKey` (default: the first of x, X, images, data, inputs,
 * arr_0 present); the labels `yKey` (default: y, Y, labels, targets, arr_1 when present).
 */
export function npzSource(path: string, xKey?: string, yKey?: string, layout?: 'nchw' | 'nhwc'): Source {
  const zip = readAll(path);
  const keys = npzKeys(zip, path);
  const has = (k: string) => keys.includes(k);
  const xk = xKey ?? X_KEYS.find(has) ?? (keys.length === 1 ? keys[0] : undefined);
  if (xk === undefined || !has(xk)) {
    throw new ShearsError(`'${path}': ${xKey ? `no array '${xKey}'` : 'cannot tell which array holds the samples'} (arrays: ${keys.join(', ')}); name it: npz:${path},KEY[,LABELS_KEY]`);
  }
  const yk = yKey ?? Y_KEYS.find((k) => has(k) && k !== xk);
  if (yKey !== undefined && !has(yKey)) throw new ShearsError(`'${path}': no array '${yKey}' (arrays: ${keys.join(', ')})`);
  // only the arrays used are inflated
  const arrays = npzArrays(zip, path, yk !== undefined ? [xk, yk] : [xk]);
  const x = arrays.get(xk)!;
  checkSampleDims(x.dims, `${path}:${xk}`);
  const labels = yk !== undefined ? labelsFrom(arrays.get(yk)!, `${path}:${yk}`) : undefined;
  if (labels && labels.length !== x.dims[0]) {
    throw new ShearsError(`labels/images count mismatch: '${path}' array '${xk}' holds ${x.dims[0]} samples, '${yk}' ${labels.length} labels`);
  }
  return arraySource(inMemoryRows(x), labels, `${path}:${xk}`, `npz ${path} ['${xk}' ${x.dims.join('x')}${yk ? `, labels '${yk}'` : ''}]`, layout);
}
