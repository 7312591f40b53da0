/**
 * Pruning masks attached to the model without touching the inference graph.
 *
 * Storage scheme (version 1): model metadata_props key `shears.masks` holds JSON
 *   {"version":1,"encoding":"bitmap-lsb/deflate/base64","masks":{"<initializer>":{"n":<elements>,"data":"<b64>"}}}
 * where each mask is a bitmap over the initializer's elements in row-major order (bit i of byte i>>3, least
 * significant bit first; 1 = weight kept, 0 = pruned), compressed with zlib deflate (RFC 1950; written with
 * fflate's zlibSync at level 6, the same bytes in Node and in a browser; read by any zlib inflater) and written in base64. Masked weights are also zero in the initializer itself, so any ONNX
 * runtime sees the pruned model; the masks tell later stages (fine-tuning, repeated pruning) which zeros are
 * pruned weights that must stay zero.
 *
 * In memory a mask is a Uint8Array with one byte per element (1 = keep, 0 = pruned).
 */
import { unzlibSync, zlibSync } from 'fflate';
import { ShearsError } from '../errors.js';
import { DataType, dtypeName } from '../ir/dtype.js';
import type { Model } from '../ir/graph.js';
import { numel, type Tensor, type NumericData } from '../ir/tensor.js';

export const MASKS_KEY = 'shears.masks';
const ENCODING = 'bitmap-lsb/deflate/base64';

export function packBits(mask: Uint8Array): Uint8Array {
  const out = new Uint8Array((mask.length + 7) >>> 3);
  const full = mask.length >>> 3;
  for (let b = 0, i = 0; b < full; b++, i += 8) {
    out[b] = (mask[i]! ? 1 : 0) | (mask[i + 1]! ? 2 : 0) | (mask[i + 2]! ? 4 : 0) | (mask[i + 3]! ? 8 : 0) |
      (mask[i + 4]! ? 16 : 0) | (mask[i + 5]! ? 32 : 0) | (mask[i + 6]! ? 64 : 0) | (mask[i + 7]! ? 128 : 0);
  }
  for (let i = full << 3; i < mask.length; i++) if (mask[i]) out[i >>> 3]! |= 1 << (i & 7);
  return out;
}

export function unpackBits(bits: Uint8Array, n: number): Uint8Array {
  if (bits.length !== (n + 7) >>> 3) throw new ShearsError(`mask bitmap holds ${bits.length} bytes, ${n} elements need ${(n + 7) >>> 3}`);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (bits[i >>> 3]! >>> (i & 7)) & 1;
  return out;
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64_INDEX = new Int16Array(128).fill(-1);
for (let i = 0; i < 64; i++) B64_INDEX[B64.charCodeAt(i)] = i;

/** Standard base64 with padding (as Node's Buffer writes it). */
export function toBase64(b: Uint8Array): string {
  let out = '';
  let i = 0;
  for (; i + 2 < b.length; i += 3) {
    const n = (b[i]! << 16) | (b[i + 1]! << 8) | b[i + 2]!;
    out += B64[n >>> 18]! + B64[(n >>> 12) & 63]! + B64[(n >>> 6) & 63]! + B64[n & 63]!;
  }
  if (i < b.length) {
    const n = (b[i]! << 16) | ((b[i + 1] ?? 0) << 8);
    out += B64[n >>> 18]! + B64[(n >>> 12) & 63]! + (i + 1 < b.length ? B64[(n >>> 6) & 63]! : '=') + '=';
  }
  return out;
}

/** Decodes standard base64 (padding optional); throws on any other character. */
export function fromBase64(s: string): Uint8Array {
  const t = s.replace(/=+$/, '');
  if (t.length % 4 === 1) throw new Error('bad base64 length');
  const out = new Uint8Array((t.length * 3) >>> 2);
  let bits = 0;
  let acc = 0;
  let o = 0;
  for (let i = 0; i < t.length; i++) {
    const c = t.charCodeAt(i);
    const v = c < 128 ? B64_INDEX[c]! : -1;
    if (v < 0) throw new Error(`bad base64 character '${t[i]}'`);
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >>> bits) & 0xff;
    }
  }
  return out;
}

function adler32(b: Uint8Array): number {
  let a = 1;
  let c = 0;
  for (let i = 0; i < b.length; ) {
    const end = Math.min(b.length, i + 5552);
    for (; i < end; i++) {
      a += b[i]!;
      c += a;
    }
    a %= 65521;
    c %= 65521;
  }
  return ((c << 16) | a) >>> 0;
}

export function encodeMask(mask: Uint8Array): string {
  return toBase64(zlibSync(packBits(mask), { level: 6 }));
}

export function decodeMask(data: string, n: number): Uint8Array {
  let bits: Uint8Array;
  try {
    const z = fromBase64(data);
    bits = unzlibSync(z);
    // fflate does not check the stream's Adler-32: checked here, as zlib would
    const at = z.length - 4;
    if (at < 2 || adler32(bits) !== ((z[at]! << 24) | (z[at + 1]! << 16) | (z[at + 2]! << 8) | z[at + 3]!) >>> 0) throw new Error('incorrect data check');
  } catch (e) {
    throw new ShearsError(`corrupt '${MASKS_KEY}' metadata: ${(e as Error).message}`);
  }
  return unpackBits(bits, n);
}

interface StoredMasks {
  version: number;
  encoding: string;
  masks: Record<string, { n: number; data: string }>;
}

function readStored(model: Model): StoredMasks | undefined {
  const raw = model.metadata.get(MASKS_KEY);
  if (raw === undefined) return undefined;
  let s: StoredMasks;
  try {
    s = JSON.parse(raw) as StoredMasks;
  } catch {
    throw new ShearsError(`corrupt '${MASKS_KEY}' metadata: not JSON`);
  }
  if (s?.version !== 1 || s.encoding !== ENCODING || typeof s.masks !== 'object' || s.masks === null) {
    throw new ShearsError(`'${MASKS_KEY}' metadata has an unknown format (version ${String(s?.version)}, encoding ${String(s?.encoding)})`);
  }
  return s;
}

/** Names of the initializers that carry a stored mask. */
export function maskedNames(model: Model): string[] {
  return Object.keys(readStored(model)?.masks ?? {});
}

/**
 * The masks stored in the model, by initializer name (1 = keep, 0 = pruned). Throws a ShearsError when a mask
 * no longer fits its initializer (it was removed or reshaped by surgery after masking); dropStaleMasks fixes that.
 */
export function getMasks(model: Model): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  const s = readStored(model);
  if (!s) return out;
  for (const [name, { n, data }] of Object.entries(s.masks)) {
    const t = model.graph.initializers.get(name);
    if (!t) throw new ShearsError(`stored mask for '${name}' has no initializer of that name (stale masks: remove them or re-prune)`);
    if (numel(t.dims) !== n) throw new ShearsError(`stored mask for '${name}' has ${n} elements, the initializer ${numel(t.dims)} (stale masks)`);
    out.set(name, decodeMask(data, n));
  }
  return out;
}

/** The stored mask of one initializer, or undefined. */
export function getMask(model: Model, name: string): Uint8Array | undefined {
  return getMasks(model).get(name);
}

/** Drops stored masks whose initializer is gone or changed size; returns their names. */
export function dropStaleMasks(model: Model): string[] {
  const s = readStored(model);
  if (!s) return [];
  const dropped: string[] = [];
  for (const [name, { n }] of Object.entries(s.masks)) {
    const t = model.graph.initializers.get(name);
    if (!t || numel(t.dims) !== n) {
      delete s.masks[name];
      dropped.push(name);
    }
  }
  if (dropped.length) writeStored(model, s.masks);
  return dropped;
}

function writeStored(model: Model, masks: Record<string, { n: number; data: string }>): void {
  if (Object.keys(masks).length === 0) {
    model.metadata.delete(MASKS_KEY);
    return;
  }
  const s: StoredMasks = { version: 1, encoding: ENCODING, masks };
  model.metadata.set(MASKS_KEY, JSON.stringify(s));
}

/**
 * Stores masks in the model (replacing all stored masks; an empty map removes the metadata). Does not touch
 * the weights: call applyMasks to zero them.
 */
export function setMasks(model: Model, masks: ReadonlyMap<string, Uint8Array>): void {
  writeStored(model, encodeInto(model, masks, {}));
}

/** Checks each mask against its initializer and adds its encoded form to `stored`. */
function encodeInto(model: Model, masks: ReadonlyMap<string, Uint8Array>, stored: StoredMasks['masks']): StoredMasks['masks'] {
  for (const [name, mask] of masks) {
    const t = model.graph.initializers.get(name);
    if (!t) throw new ShearsError(`mask for '${name}': no initializer of that name`);
    if (numel(t.dims) !== mask.length) throw new ShearsError(`mask for '${name}' has ${mask.length} elements, the initializer ${numel(t.dims)}`);
    stored[name] = { n: mask.length, data: encodeMask(mask) };
  }
  return stored;
}

/** Stores or replaces the masks of some initializers, keeping the others (stored ones are not re-encoded). */
export function updateMasks(model: Model, masks: ReadonlyMap<string, Uint8Array>): void {
  writeStored(model, encodeInto(model, masks, { ...(readStored(model)?.masks ?? {}) }));
}

/** A new tensor equal to t with the masked-out elements set to zero (t is not modified). */
export function maskTensor(t: Tensor, mask: Uint8Array): Tensor {
  if (Array.isArray(t.data)) throw new ShearsError(`cannot mask a ${dtypeName(t.dtype)} tensor`);
  if (!isMaskableDtype(t.dtype)) throw new ShearsError(`cannot mask a ${dtypeName(t.dtype)} tensor`);
  const src = t.data as NumericData;
  if (src.length !== mask.length) throw new ShearsError(`mask has ${mask.length} elements, the tensor ${src.length}`);
  const data = src.slice() as NumericData;
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
    for (let i = 0; i < mask.length; i++) if (!mask[i]) data[i] = 0n;
  } else {
    for (let i = 0; i < mask.length; i++) if (!mask[i]) data[i] = 0;
  }
  return { dtype: t.dtype, dims: [...t.dims], data };
}

/** Element types a mask can be applied to (one storage slot per element). */
export function isMaskableDtype(dtype: number): boolean {
  return dtype === DataType.FLOAT || dtype === DataType.DOUBLE || dtype === DataType.FLOAT16 || dtype === DataType.BFLOAT16;
}

/**
 * Zeros every masked weight (replacing the initializer tensors); returns how many weights were nonzero and
 * became zero. Stages that change weights (fine-tuning, repair) call this to keep pruned weights at zero.
 */
export function applyMasks(model: Model): number {
  let changed = 0;
  for (const [name, mask] of getMasks(model)) {
    const t = model.graph.initializers.get(name)!;
    const d = t.data as NumericData;
    let need = 0;
    for (let i = 0; i < mask.length; i++) if (!mask[i] && d[i] !== 0 && d[i] !== 0n) need++;
    // -0 is fine (=== 0); float16/bfloat16 negative zero (0x8000) counts as nonzero bits, rewrite it too.
    if (need === 0 && !(t.dtype === DataType.FLOAT16 || t.dtype === DataType.BFLOAT16)) continue;
    const masked = maskTensor(t, mask);
    model.graph.initializers.set(name, masked);
    changed += need;
  }
  return changed;
}

/** Bakes the masks in (zeros the masked weights) and drops the mask metadata; returns the names unmasked. */
export function removeMasks(model: Model): string[] {
  const names = [...getMasks(model).keys()];
  applyMasks(model);
  model.metadata.delete(MASKS_KEY);
  return names;
}
