/** Builders of tiny data files for the data tests (IDX, npy, npz, PNG, JPEG). */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { zipSync } from 'fflate';
import jpeg from 'jpeg-js';
import pngjs from 'pngjs';

export function tempDir(prefix = 'shears-data-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** An IDX ubyte file: dims and uint8 values. */
export function idxBytes(dims: number[], values: ArrayLike<number>, typeCode = 0x08): Uint8Array {
  const head = new Uint8Array(4 + 4 * dims.length);
  head[2] = typeCode;
  head[3] = dims.length;
  const dv = new DataView(head.buffer);
  dims.forEach((d, i) => dv.setUint32(4 + 4 * i, d, false));
  const out = new Uint8Array(head.length + values.length);
  out.set(head);
  out.set(Array.from(values), head.length);
  return out;
}

export function writeIdx(path: string, dims: number[], values: ArrayLike<number>, gzip = false): void {
  const b = idxBytes(dims, values);
  writeFileSync(path, gzip ? gzipSync(b) : b);
}

/** A .npy file (format 1.0) of the given numpy dtype ('<f4', '|u1', '<i8', '>f4', ...). */
export function npyBytes(descr: string, shape: number[], values: ArrayLike<number>): Uint8Array {
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const size = Number(descr.slice(2));
  const little = descr[0] !== '>';
  const kind = descr[1];
  const body = new Uint8Array(values.length * size);
  const dv = new DataView(body.buffer);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (kind === 'f' && size === 4) dv.setFloat32(i * 4, v, little);
    else if (kind === 'f' && size === 8) dv.setFloat64(i * 8, v, little);
    else if (kind === 'u' && size === 1) dv.setUint8(i, v);
    else if (kind === 'i' && size === 8) dv.setBigInt64(i * 8, BigInt(v), little);
    else if (kind === 'i' && size === 4) dv.setInt32(i * 4, v, little);
    else throw new Error(`test helper: dtype ${descr}`);
  }
  const out = new Uint8Array(10 + header.length + body.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, header.length & 0xff, header.length >> 8]);
  out.set(new TextEncoder().encode(header), 10);
  out.set(body, 10 + header.length);
  return out;
}

export function npzBytes(arrays: Record<string, Uint8Array>): Uint8Array {
  return zipSync(Object.fromEntries(Object.entries(arrays).map(([k, v]) => [`${k}.npy`, v])));
}

/** PNG bytes of an RGBA image (or gray/RGB given with `channels`, expanded to RGBA for the encoder). */
export function pngBytes(width: number, height: number, channels: 1 | 3 | 4, pixels: ArrayLike<number>): Uint8Array {
  const png = new pngjs.PNG({ width, height });
  for (let p = 0; p < width * height; p++) {
    for (let k = 0; k < 3; k++) png.data[p * 4 + k] = pixels[p * channels + (channels === 1 ? 0 : k)]!;
    png.data[p * 4 + 3] = channels === 4 ? pixels[p * 4 + 3]! : 255;
  }
  const colorType = channels === 1 ? 0 : channels === 3 ? 2 : 6;
  const buf = pngjs.PNG.sync.write(png, { colorType: colorType as 0 | 2 | 6, inputColorType: 6, inputHasAlpha: true });
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

export function jpegBytes(width: number, height: number, rgb: ArrayLike<number>, quality = 100): Uint8Array {
  const data = new Uint8Array(width * height * 4);
  for (let p = 0; p < width * height; p++) {
    data[p * 4] = rgb[p * 3]!;
    data[p * 4 + 1] = rgb[p * 3 + 1]!;
    data[p * 4 + 2] = rgb[p * 3 + 2]!;
    data[p * 4 + 3] = 255;
  }
  const b = jpeg.encode({ width, height, data }, quality).data;
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
