/**
 * A PNG decoder for the browser bundle, standing in for pngjs (which needs Node's streams, zlib and Buffer):
 * the same result as `pngjs.PNG.sync.read` for what data/image.ts reads of it (`width`, `height`, RGBA `data`
 * with 16-bit and low bit depths scaled to 8 bits as pngjs scales them, `color`, `alpha`), chunk CRCs checked,
 * inflated with fflate. Interlaced (Adam7) PNGs are refused with a message.
 */
import { unzlibSync } from 'fflate';

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(b: Uint8Array, start: number, end: number): number {
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };

export interface DecodedPng {
  width: number;
  height: number;
  data: Uint8Array;
  color: boolean;
  alpha: boolean;
}

export function readPng(bytes: Uint8Array): DecodedPng {
  const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (bytes.length < 8 || sig.some((s, i) => bytes[i] !== s)) throw new Error('Invalid file signature');
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 8;
  let width = 0, height = 0, depth = 0, colorType = -1, interlace = 0;
  let palette: Uint8Array | undefined;
  const idat: Uint8Array[] = [];
  let ended = false;
  while (!ended) {
    if (pos + 8 > bytes.length) throw new Error('Unexpected end of input');
    const len = v.getUint32(pos);
    const type = String.fromCharCode(bytes[pos + 4]!, bytes[pos + 5]!, bytes[pos + 6]!, bytes[pos + 7]!);
    const start = pos + 8;
    const end = start + len;
    if (end + 4 > bytes.length) throw new Error('Unexpected end of input');
    if (crc32(bytes, pos + 4, end) !== v.getUint32(end)) throw new Error(`Crc error - ${type}`);
    const body = bytes.subarray(start, end);
    if (type === 'IHDR') {
      width = v.getUint32(start);
      height = v.getUint32(start + 4);
      depth = bytes[start + 8]!;
      colorType = bytes[start + 9]!;
      interlace = bytes[start + 12]!;
      if (CHANNELS[colorType] === undefined) throw new Error(`Unsupported color type ${colorType}`);
      if (![1, 2, 4, 8, 16].includes(depth)) throw new Error(`Unsupported bit depth ${depth}`);
      if (interlace !== 0) throw new Error('interlaced (Adam7) PNGs are not decoded in the browser; save the image without interlacing');
    } else if (type === 'PLTE') {
      palette = body.slice();
    } else if (type === 'IDAT') {
      idat.push(body);
    } else if (type === 'IEND') {
      ended = true;
    }
    pos = end + 4;
  }
  if (colorType < 0) throw new Error('No IHDR chunk');
  if (colorType === 3 && !palette) throw new Error('Expected palette not found');
  const total = idat.reduce((a, c) => a + c.length, 0);
  const z = new Uint8Array(total);
  let o = 0;
  for (const c of idat) { z.set(c, o); o += c.length; }
  const raw = unzlibSync(z);
  const ch = CHANNELS[colorType]!;
  const bpp = Math.max(1, (ch * depth) >> 3);
  const stride = (width * ch * depth + 7) >> 3;
  if (raw.length < height * (stride + 1)) throw new Error('Unexpected end of image data');
  // unfilter
  const px = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)]!;
    const src = y * (stride + 1) + 1;
    const row = y * stride;
    const prev = row - stride;
    for (let x = 0; x < stride; x++) {
      const r = raw[src + x]!;
      const a = x >= bpp ? px[row + x - bpp]! : 0;
      const b = y > 0 ? px[prev + x]! : 0;
      const c = x >= bpp && y > 0 ? px[prev + x - bpp]! : 0;
      let val: number;
      switch (f) {
        case 0: val = r; break;
        case 1: val = r + a; break;
        case 2: val = r + b; break;
        case 3: val = r + ((a + b) >> 1); break;
        case 4: {
          const p = a + b - c;
          const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
          val = r + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
          break;
        }
        default: throw new Error(`Unrecognised filter type - ${f}`);
      }
      px[row + x] = val & 0xff;
    }
  }
  // samples -> 8-bit RGBA (pngjs: gray replicated, alpha 255 when absent, palette looked up, depth rescaled)
  const out = new Uint8Array(width * height * 4);
  const max = (1 << depth) - 1;
  const sample = (row: number, i: number): number => {
    if (depth === 8) return px[row + i]!;
    if (depth === 16) return (px[row + 2 * i]! << 8) | px[row + 2 * i + 1]!;
    const bit = i * depth;
    return (px[row + (bit >> 3)]! >> (8 - depth - (bit & 7))) & max;
  };
  const scale = (s: number) => (depth === 8 || colorType === 3 ? s : Math.floor((s * 255) / max + 0.5));
  for (let y = 0; y < height; y++) {
    const row = y * stride;
    for (let x = 0; x < width; x++) {
      const q = (y * width + x) * 4;
      if (colorType === 3) {
        const k = sample(row, x) * 3;
        out[q] = palette![k] ?? 0; out[q + 1] = palette![k + 1] ?? 0; out[q + 2] = palette![k + 2] ?? 0; out[q + 3] = 255;
        continue;
      }
      const s = (j: number) => scale(sample(row, x * ch + j));
      if (ch === 1) { const g = s(0); out[q] = g; out[q + 1] = g; out[q + 2] = g; out[q + 3] = 255; }
      else if (ch === 2) { const g = s(0); out[q] = g; out[q + 1] = g; out[q + 2] = g; out[q + 3] = s(1); }
      else if (ch === 3) { out[q] = s(0); out[q + 1] = s(1); out[q + 2] = s(2); out[q + 3] = 255; }
      else { out[q] = s(0); out[q + 1] = s(1); out[q + 2] = s(2); out[q + 3] = s(3); }
    }
  }
  return { width, height, data: out, color: (colorType & 2) !== 0, alpha: (colorType & 4) !== 0 };
}

/** The face of pngjs that data/image.ts uses. */
export const PNG = { sync: { read: (buf: Uint8Array) => readPng(buf) } };
export default { PNG };
