/** PNG and JPEG decoding (pure-JS decoders: pngjs, jpeg-js) into raw HWC images. */
import jpeg from 'jpeg-js';
import pngjs from 'pngjs';
import { ShearsError } from '../errors.js';
import { MAX_IMAGE_PIXELS } from './limits.js';
import type { RawImage } from './types.js';

export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg'];

export function isImageFile(name: string): boolean {
  const lower = name.toLowerCase();
  return IMAGE_EXTENSIONS.some((e) => lower.endsWith(e));
}

/** Decodes PNG or JPEG bytes (told apart by their signature). `what` names the file in errors. */
export function decodeImage(bytes: Uint8Array, what: string): RawImage {
  const isPng = bytes.length >= 8 && bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47;
  const isJpeg = bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff;
  if (!isPng && !isJpeg) throw new ShearsError(`corrupt image file '${what}': neither PNG nor JPEG (bad signature)`);
  if (isPng) checkPngSize(bytes, what);
  try {
    return isPng ? decodePng(bytes) : decodeJpeg(bytes);
  } catch (e) {
    if (e instanceof ShearsError) throw e;
    const message = (e as Error).message ?? String(e);
    if (/maxResolutionInMP/.test(message)) throw new ShearsError(`image '${what}' has more than the ${MAX_IMAGE_PIXELS / 1e6} megapixels shears decodes (${message})`);
    throw new ShearsError(`corrupt image file '${what}': ${message}`);
  }
}

/** Refuses a PNG whose header (IHDR, which must come first) claims more pixels than may be decoded. */
function checkPngSize(bytes: Uint8Array, what: string): void {
  if (bytes.length < 24) return; // too short to decode: the decoder says so
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const width = v.getUint32(16, false);
  const height = v.getUint32(20, false);
  if (width * height > MAX_IMAGE_PIXELS) {
    throw new ShearsError(`image '${what}' is ${width}x${height} by its PNG header, more than the ${MAX_IMAGE_PIXELS / 1e6} megapixels shears decodes`);
  }
}

function decodePng(bytes: Uint8Array): RawImage {
  const png = pngjs.PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  const { width, height } = png;
  const rgba = new Uint8Array(png.data.buffer, png.data.byteOffset, png.data.byteLength);
  if (rgba.length !== width * height * 4) throw new Error(`decoded ${rgba.length} bytes for ${width}x${height}`);
  // pngjs always gives RGBA; keep only the channels the file has (gray, RGB, and alpha when present).
  const gray = (png as unknown as { color?: boolean }).color === false;
  const alpha = (png as unknown as { alpha?: boolean }).alpha === true;
  if (!gray && alpha) return { width, height, channels: 4, data: rgba };
  const c = gray ? 1 : 3;
  const out = new Uint8Array(width * height * c);
  for (let p = 0, q = 0; p < width * height; p++) {
    for (let k = 0; k < c; k++) out[q++] = rgba[p * 4 + k]!;
  }
  return { width, height, channels: c, data: out };
}

function decodeJpeg(bytes: Uint8Array): RawImage {
  const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, tolerantDecoding: false, maxResolutionInMP: MAX_IMAGE_PIXELS / 1e6, maxMemoryUsageInMB: 1024 });
  const { width, height } = img;
  if (img.data.length !== width * height * 3) throw new Error(`decoded ${img.data.length} bytes for ${width}x${height}`);
  return { width, height, channels: 3, data: img.data };
}
