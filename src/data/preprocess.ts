/**
 * Preprocessing: raw image -> model input. Steps, in order: color conversion (gray/rgb), resize (bilinear),
 * center crop, scale (multiply), per-channel (x - mean) / std, layout (NCHW or NHWC). The spec is plain JSON and
 * is stored in a model's metadata_props under 'shears.preprocess' so later commands reuse it.
 */
import { ShearsError } from '../errors.js';
import type { Dim, Model } from '../ir/graph.js';
import type { RawImage } from './types.js';

export interface PreprocessSpec {
  /** Resize before cropping: [H, W] exactly, or one number for the shorter side (aspect ratio kept). Bilinear. */
  resize?: number | [number, number];
  /** Center crop to [H, W]. */
  crop?: [number, number];
  /** Multiply the pixel values by this (1/255 maps 0..255 to [0, 1]). Default 1. */
  scale?: number;
  /** Per-channel mean subtracted after scaling (one value, or one per channel). Default 0. */
  mean?: number[];
  /** Per-channel std divided by after subtracting the mean. Default 1. */
  std?: number[];
  /** Tensor layout of a batch. Default nchw. */
  layout?: 'nchw' | 'nhwc';
  /** Channels fed to the model. Default: from the model input (1 channel: gray, 3: rgb), else as stored. */
  color?: 'gray' | 'rgb';
  /**
   * Letterbox to [H, W] as Ultralytics' LetterBox (auto=False, scaleup=True): scale min(H/h, W/w), bilinear
   * resize to round(w*r) x round(h*r), centred padding with the value 114 (before scaling). Excludes resize/crop.
   */
  letterbox?: [number, number];
}

export const PREPROCESS_KEY = 'shears.preprocess';

function isPosInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v > 0;
}

/** Checks a spec (e.g. parsed from JSON) and returns a clean copy. */
export function validatePreprocess(v: unknown, what = 'preprocess spec'): PreprocessSpec {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ShearsError(`${what}: expected a JSON object`);
  const o = v as Record<string, unknown>;
  const known = ['resize', 'crop', 'scale', 'mean', 'std', 'layout', 'color', 'letterbox'];
  for (const k of Object.keys(o)) if (!known.includes(k)) throw new ShearsError(`${what}: unknown field '${k}' (known: ${known.join(', ')})`);
  const out: PreprocessSpec = {};
  if (o['resize'] !== undefined) {
    const r = o['resize'];
    if (isPosInt(r)) out.resize = r;
    else if (Array.isArray(r) && r.length === 2 && r.every(isPosInt)) out.resize = [r[0], r[1]];
    else throw new ShearsError(`${what}: resize must be a positive integer or [H, W]`);
  }
  if (o['letterbox'] !== undefined) {
    const l = o['letterbox'];
    if (Array.isArray(l) && l.length === 2 && l.every(isPosInt)) out.letterbox = [l[0], l[1]];
    else if (isPosInt(l)) out.letterbox = [l, l];
    else throw new ShearsError(`${what}: letterbox must be [H, W]`);
    if (o['resize'] !== undefined || o['crop'] !== undefined) throw new ShearsError(`${what}: letterbox replaces resize and crop (give one or the other)`);
  }
  if (o['crop'] !== undefined) {
    const c = o['crop'];
    if (Array.isArray(c) && c.length === 2 && c.every(isPosInt)) out.crop = [c[0], c[1]];
    else if (isPosInt(c)) out.crop = [c, c];
    else throw new ShearsError(`${what}: crop must be [H, W]`);
  }
  if (o['scale'] !== undefined) {
    if (typeof o['scale'] !== 'number' || !Number.isFinite(o['scale']) || o['scale'] === 0) throw new ShearsError(`${what}: scale must be a finite non-zero number`);
    out.scale = o['scale'];
  }
  for (const k of ['mean', 'std'] as const) {
    const a = o[k];
    if (a === undefined) continue;
    if (!Array.isArray(a) || a.length === 0 || !a.every((x) => typeof x === 'number' && Number.isFinite(x))) {
      throw new ShearsError(`${what}: ${k} must be a non-empty list of numbers`);
    }
    if (k === 'std' && a.some((x) => x === 0)) throw new ShearsError(`${what}: std must not be 0`);
    out[k] = [...(a as number[])];
  }
  if (o['layout'] !== undefined) {
    if (o['layout'] !== 'nchw' && o['layout'] !== 'nhwc') throw new ShearsError(`${what}: layout must be 'nchw' or 'nhwc'`);
    out.layout = o['layout'];
  }
  if (o['color'] !== undefined) {
    if (o['color'] !== 'gray' && o['color'] !== 'rgb') throw new ShearsError(`${what}: color must be 'gray' or 'rgb'`);
    out.color = o['color'];
  }
  return out;
}

export function preprocessToJSON(spec: PreprocessSpec): string {
  return JSON.stringify(validatePreprocess(spec));
}

export function preprocessFromJSON(text: string, what = 'preprocess spec'): PreprocessSpec {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new ShearsError(`${what} is not valid JSON: ${(e as Error).message}`);
  }
  return validatePreprocess(v, what);
}

/** The preprocessing stored in a model's metadata_props, if any. */
export function readPreprocess(model: Model): PreprocessSpec | undefined {
  const text = model.metadata.get(PREPROCESS_KEY);
  return text === undefined ? undefined : preprocessFromJSON(text, `metadata '${PREPROCESS_KEY}' of the model`);
}

/** Stores the preprocessing in a model's metadata_props (replacing any earlier one). */
export function writePreprocess(model: Model, spec: PreprocessSpec): void {
  model.metadata.set(PREPROCESS_KEY, preprocessToJSON(spec));
}

/** CLI option values (strings as commander gives them) for preprocessing. */
export interface PreprocessFlags {
  mean?: string;
  std?: string;
  /** A factor ('0.00392', '1/255'), or true for 1/255. */
  scale?: string | boolean;
  /** 'N' (shorter side) or 'HxW'. */
  resize?: string;
  /** 'N' or 'HxW'. */
  crop?: string;
  layout?: string;
  color?: string;
  /** 'N' or 'HxW'. */
  letterbox?: string;
}

function parseNumber(s: string, flag: string): number {
  const t = s.trim();
  const frac = /^([-+]?[\d.]+(?:e[-+]?\d+)?)\s*\/\s*([\d.]+(?:e[-+]?\d+)?)$/i.exec(t);
  const v = frac ? Number(frac[1]) / Number(frac[2]) : Number(t);
  if (t === '' || !Number.isFinite(v)) throw new ShearsError(`${flag}: '${s}' is not a number`);
  return v;
}

function parseSize(s: string, flag: string): number | [number, number] {
  const m = /^\s*(\d+)\s*(?:[x,]\s*(\d+))?\s*$/i.exec(s);
  if (!m) throw new ShearsError(`${flag}: '${s}' is not a size (N or HxW)`);
  const h = Number(m[1]);
  const w = m[2] !== undefined ? Number(m[2]) : undefined;
  if (h <= 0 || (w !== undefined && w <= 0)) throw new ShearsError(`${flag}: sizes must be positive`);
  return w === undefined ? h : [h, w];
}

/** The spec given by CLI flags (only the fields given), validated. */
export function preprocessFromFlags(f: PreprocessFlags): PreprocessSpec {
  const o: Record<string, unknown> = {};
  if (f.mean !== undefined) o['mean'] = f.mean.split(',').map((s) => parseNumber(s, '--mean'));
  if (f.std !== undefined) o['std'] = f.std.split(',').map((s) => parseNumber(s, '--std'));
  if (f.scale !== undefined) o['scale'] = f.scale === true ? 1 / 255 : f.scale === false ? 1 : parseNumber(f.scale, '--scale');
  if (f.resize !== undefined) o['resize'] = parseSize(f.resize, '--resize');
  if (f.crop !== undefined) {
    const c = parseSize(f.crop, '--crop');
    o['crop'] = typeof c === 'number' ? [c, c] : c;
  }
  if (f.letterbox !== undefined) {
    const l = parseSize(f.letterbox, '--letterbox');
    o['letterbox'] = typeof l === 'number' ? [l, l] : l;
  }
  if (f.layout !== undefined) o['layout'] = f.layout.toLowerCase();
  if (f.color !== undefined) o['color'] = f.color.toLowerCase() === 'grey' ? 'gray' : f.color.toLowerCase();
  return validatePreprocess(o, 'preprocessing flags');
}

/** Fields of `over` replace those of `base`. */
export function mergePreprocess(base: PreprocessSpec | undefined, over: PreprocessSpec): PreprocessSpec {
  const b: PreprocessSpec = { ...(base ?? {}) };
  // a given letterbox replaces a stored resize/crop, a given resize/crop a stored letterbox
  if (over.letterbox !== undefined) {
    delete b.resize;
    delete b.crop;
  }
  if (over.resize !== undefined || over.crop !== undefined) delete b.letterbox;
  return validatePreprocess({ ...b, ...over });
}

/**
 * torchvision's convention: mean and std given in [0, 1] units (every |value| <= 1) with no scale apply to pixels
 * already scaled to [0, 1] (ToTensor's x / 255, then Normalize). An explicit scale (`--scale 1` for raw values)
 * overrides it.
 */
export function impliesUnitScale(spec: PreprocessSpec): boolean {
  if (spec.scale !== undefined) return false;
  const values = [...(spec.mean ?? []), ...(spec.std ?? [])];
  return values.length > 0 && values.every((v) => Math.abs(v) <= 1);
}

/** The spec as applied to 8-bit pixels: scale 1/255 first where the mean/std convention implies it. */
export function forEightBit(spec: PreprocessSpec): PreprocessSpec {
  return impliesUnitScale(spec) ? { ...spec, scale: 1 / 255 } : spec;
}

/** One line describing a spec, e.g. 'scale 1/255, mean 0.286, std 0.353, layout nchw, color gray'. */
export function formatPreprocess(spec: PreprocessSpec): string {
  const parts: string[] = [];
  const list = (a: number[]) => a.map((v) => Number(v.toPrecision(6))).join(',');
  if (spec.resize !== undefined) parts.push(`resize ${typeof spec.resize === 'number' ? spec.resize : spec.resize.join('x')}`);
  if (spec.crop) parts.push(`crop ${spec.crop.join('x')}`);
  if (spec.letterbox) parts.push(`letterbox ${spec.letterbox.join('x')} (pad 114)`);
  if (spec.scale !== undefined) {
    const inv = 1 / spec.scale;
    parts.push(`scale ${Math.abs(inv - Math.round(inv)) < 1e-9 * Math.abs(inv) && Math.round(inv) !== 1 ? `1/${Math.round(inv)}` : Number(spec.scale.toPrecision(6))}`);
  }
  if (spec.mean) parts.push(`mean ${list(spec.mean)}`);
  if (spec.std) parts.push(`std ${list(spec.std)}`);
  if (spec.layout) parts.push(`layout ${spec.layout}`);
  if (spec.color) parts.push(`color ${spec.color}`);
  return parts.length ? parts.join(', ') : 'none (raw values)';
}

/** Whether the spec normalises at all (scale, mean or std). */
export function normalises(spec: PreprocessSpec): boolean {
  return spec.scale !== undefined || spec.mean !== undefined || spec.std !== undefined;
}

/**
 * Fills layout and color from a model input shape ([N, C, H, W] or [N, H, W, C] with C in 1 or 3) where the
 * spec leaves them open, and returns the per-sample shape the model expects (null where dynamic).
 */
export function fitToInput(spec: PreprocessSpec, inputShape: readonly Dim[] | undefined): { spec: PreprocessSpec; sampleShape: (number | null)[] | undefined } {
  const out = { ...spec };
  if (!inputShape || inputShape.length !== 4) {
    return { spec: out, sampleShape: inputShape ? inputShape.slice(1).map((d) => (typeof d === 'number' ? d : null)) : undefined };
  }
  const d = inputShape.map((x) => (typeof x === 'number' ? x : null));
  if (out.layout === undefined) out.layout = d[3] !== null && [1, 3].includes(d[3]!) && !(d[1] !== null && [1, 3].includes(d[1]!)) ? 'nhwc' : 'nchw';
  const c = out.layout === 'nchw' ? d[1] : d[3];
  if (out.color === undefined && (c === 1 || c === 3)) out.color = c === 1 ? 'gray' : 'rgb';
  return { spec: out, sampleShape: d.slice(1) };
}

// ------------------------------------------------------------------------------------------ image operations

/** PIL-style separable bilinear resampling weights for one axis (antialiased when shrinking). */
function axisWeights(inSize: number, outSize: number): { start: Int32Array; count: Int32Array; w: Float64Array; k: number } {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = filterscale;
  const k = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const w = new Float64Array(outSize * k);
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5));
    let sum = 0;
    for (let x = xmin; x < xmax; x++) {
      const t = Math.abs((x - center + 0.5) / filterscale);
      const v = t < 1 ? 1 - t : 0;
      w[o * k + x - xmin] = v;
      sum += v;
    }
    if (sum !== 0) for (let x = 0; x < xmax - xmin; x++) w[o * k + x] = w[o * k + x]! / sum;
    start[o] = xmin;
    count[o] = xmax - xmin;
  }
  return { start, count, w, k };
}

/** Bilinear resize of a float HWC image (half-pixel centres; antialiased like PIL when shrinking). */
export function resizeBilinear(src: Float32Array, h: number, w: number, c: number, oh: number, ow: number): Float32Array {
  if (oh === h && ow === w) return src;
  const ax = axisWeights(w, ow);
  const tmp = new Float32Array(h * ow * c);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < ow; x++) {
      const s = ax.start[x]!;
      const n = ax.count[x]!;
      for (let ch = 0; ch < c; ch++) {
        let acc = 0;
        for (let i = 0; i < n; i++) acc += ax.w[x * ax.k + i]! * src[(y * w + s + i) * c + ch]!;
        tmp[(y * ow + x) * c + ch] = acc;
      }
    }
  }
  const ay = axisWeights(h, oh);
  const out = new Float32Array(oh * ow * c);
  for (let y = 0; y < oh; y++) {
    const s = ay.start[y]!;
    const n = ay.count[y]!;
    for (let i = 0; i < n; i++) {
      const wt = ay.w[y * ay.k + i]!;
      const row = (s + i) * ow * c;
      const orow = y * ow * c;
      for (let j = 0; j < ow * c; j++) out[orow + j]! += wt * tmp[row + j]!;
    }
  }
  return out;
}

/** Python's round() (half to even), as torchvision's center crop uses. */
export function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** Letterbox geometry: an h x w image placed into H x W (Ultralytics' LetterBox, auto=False, scaleup=True). */
export interface Letterbox {
  /** Scale: min(H / h, W / w). */
  ratio: number;
  /** The resized image: round(w * ratio) x round(h * ratio) (Python's round). */
  width: number;
  height: number;
  /** Padding left and top: round(dw - 0.1), round(dh - 0.1), dw and dh half the free space. */
  left: number;
  top: number;
  /** The letterboxed size H x W. */
  outHeight: number;
  outWidth: number;
}

/** The letterbox of an h x w image into H x W. */
export function letterboxGeometry(h: number, w: number, H: number, W: number): Letterbox {
  const ratio = Math.min(H / h, W / w);
  const width = roundHalfEven(w * ratio);
  const height = roundHalfEven(h * ratio);
  const dw = (W - width) / 2;
  const dh = (H - height) / 2;
  return { ratio, width, height, left: roundHalfEven(dw - 0.1), top: roundHalfEven(dh - 0.1), outHeight: H, outWidth: W };
}

/** The value letterbox padding fills with (before scaling), as Ultralytics. */
export const LETTERBOX_PAD = 114;

/** Letterboxes a float HWC image into H x W (bilinear resize, padding LETTERBOX_PAD). */
export function letterboxImage(src: Float32Array, h: number, w: number, c: number, H: number, W: number): Float32Array {
  const g = letterboxGeometry(h, w, H, W);
  const resized = resizeBilinear(src, h, w, c, g.height, g.width);
  if (g.height === H && g.width === W) return resized;
  const out = new Float32Array(H * W * c).fill(LETTERBOX_PAD);
  for (let y = 0; y < g.height; y++) {
    const oy = y + g.top;
    if (oy < 0 || oy >= H) continue;
    for (let x = 0; x < g.width; x++) {
      const ox = x + g.left;
      if (ox < 0 || ox >= W) continue;
      for (let k = 0; k < c; k++) out[(oy * W + ox) * c + k] = resized[(y * g.width + x) * c + k]!;
    }
  }
  return out;
}

/** Output size of the resize step for an h x w image. */
export function resizedSize(spec: PreprocessSpec, h: number, w: number): [number, number] {
  if (spec.letterbox) return spec.letterbox;
  const r = spec.resize;
  if (r === undefined) return [h, w];
  if (typeof r !== 'number') return r;
  // torchvision: the shorter side becomes r, the longer one int(r * long / short).
  return h <= w ? [r, Math.trunc((r * w) / h)] : [Math.trunc((r * h) / w), r];
}

/** The per-sample output shape of a raw h x w x c image after `spec` (in the spec's layout). */
export function outputShape(spec: PreprocessSpec, h: number, w: number, c: number): number[] {
  let [oh, ow] = resizedSize(spec, h, w);
  if (spec.crop) [oh, ow] = spec.crop;
  const oc = spec.color === 'gray' ? 1 : spec.color === 'rgb' ? 3 : c === 4 ? 3 : c;
  return spec.layout === 'nhwc' ? [oh, ow, oc] : [oc, oh, ow];
}

/**
 * Preprocesses one image into `out` at `offset` (which must hold numel(outputShape(...)) floats). `what` names
 * the image in errors.
 */
export function preprocessImage(img: RawImage, given: PreprocessSpec, out: Float32Array, offset: number, what: string): void {
  const { width: w, height: h, channels: c } = img;
  const spec = img.data instanceof Uint8Array ? forEightBit(given) : given;
  if (![1, 3, 4].includes(c)) throw new ShearsError(`image '${what}' has ${c} channels (1, 3 or 4 expected)`);
  const oc = spec.color === 'gray' ? 1 : spec.color === 'rgb' ? 3 : c === 4 ? 3 : c;
  const src = img.data;
  // 1. colour conversion into float HWC with oc channels (alpha dropped).
  let cur: Float32Array = new Float32Array(h * w * oc);
  const u8 = src instanceof Uint8Array;
  for (let p = 0; p < h * w; p++) {
    if (oc === 1) {
      if (c === 1) cur[p] = src[p]!;
      else if (u8) {
        // PIL's convert('L'): ITU-R 601-2 luma in 16-bit fixed point, rounded.
        cur[p] = (src[p * c]! * 19595 + src[p * c + 1]! * 38470 + src[p * c + 2]! * 7471 + 0x8000) >> 16;
      } else cur[p] = 0.299 * src[p * c]! + 0.587 * src[p * c + 1]! + 0.114 * src[p * c + 2]!;
    } else if (c === 1) {
      const v = src[p]!;
      cur[p * 3] = v;
      cur[p * 3 + 1] = v;
      cur[p * 3 + 2] = v;
    } else {
      cur[p * 3] = src[p * c]!;
      cur[p * 3 + 1] = src[p * c + 1]!;
      cur[p * 3 + 2] = src[p * c + 2]!;
    }
  }
  // 2. resize (or letterbox), 3. center crop.
  let [ch, cw] = resizedSize(spec, h, w);
  if (spec.letterbox) cur = letterboxImage(cur, h, w, oc, ch, cw);
  else cur = resizeBilinear(cur, h, w, oc, ch, cw);
  let top = 0;
  let left = 0;
  let oh = ch;
  let ow = cw;
  if (spec.crop) {
    [oh, ow] = spec.crop;
    if (oh > ch || ow > cw) throw new ShearsError(`image '${what}' is ${ch}x${cw} after resizing, smaller than the crop ${oh}x${ow}`);
    top = roundHalfEven((ch - oh) / 2);
    left = roundHalfEven((cw - ow) / 2);
  }
  // 4. scale, 5. mean/std, 6. layout.
  const scale = spec.scale ?? 1;
  const mean = spec.mean ?? [0];
  const std = spec.std ?? [1];
  for (const [k, a] of [['mean', mean], ['std', std]] as const) {
    if (a.length !== 1 && a.length !== oc) throw new ShearsError(`--${k} has ${a.length} values, the images have ${oc} channels`);
  }
  // Float32 arithmetic step by step, as torchvision's ToTensor (x / 255) and Normalize ((x - mean) / std) do it;
  // a scale of 1/k with integral k divides by k.
  const inv = 1 / scale;
  const divisor = Math.abs(inv - Math.round(inv)) < 1e-9 * Math.abs(inv) ? Math.round(inv) : 0;
  const m32 = new Float32Array(oc);
  const s32 = new Float32Array(oc);
  for (let k = 0; k < oc; k++) {
    m32[k] = mean.length === 1 ? mean[0]! : mean[k]!;
    s32[k] = std.length === 1 ? std[0]! : std[k]!;
  }
  const nhwc = spec.layout === 'nhwc';
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      const sp = ((y + top) * cw + (x + left)) * oc;
      for (let k = 0; k < oc; k++) {
        const s = divisor ? Math.fround(cur[sp + k]! / divisor) : Math.fround(cur[sp + k]! * scale);
        const v = Math.fround(s - m32[k]!) / s32[k]!;
        out[offset + (nhwc ? (y * ow + x) * oc + k : (k * oh + y) * ow + x)] = v;
      }
    }
  }
}

/**
 * Ultralytics' preprocessing for a detector whose input is [N, 3, H, W] (H, W fixed): letterbox to H x W, scale
 * 1/255, rgb, each where the spec leaves it open (a stored or given resize/crop/letterbox, scale/mean/std, color
 * or layout is kept). Undefined when the input is not such a shape.
 */
export function detectorPreprocess(spec: PreprocessSpec, inputShape: readonly Dim[] | undefined): PreprocessSpec | undefined {
  if (!inputShape || inputShape.length !== 4) return undefined;
  const [, c, h, w] = inputShape;
  if (c !== 3 || typeof h !== 'number' || typeof w !== 'number' || h <= 0 || w <= 0) return undefined;
  const out: PreprocessSpec = { ...spec };
  if (out.letterbox === undefined && out.resize === undefined && out.crop === undefined) out.letterbox = [h, w];
  if (!normalises(out)) out.scale = 1 / 255;
  out.color ??= 'rgb';
  out.layout ??= 'nchw';
  return out;
}

/**
 * The preprocessing to use for a model: the spec stored in its metadata, with any fields given on the command
 * line replacing the stored ones. `warning` is set when nothing normalises the pixels.
 */
export function preprocessFor(model: Model | undefined, flags: PreprocessFlags): { spec: PreprocessSpec; from: 'flags' | 'metadata' | 'metadata+flags' | 'none'; warning?: string } {
  const stored = model ? readPreprocess(model) : undefined;
  const given = preprocessFromFlags(flags);
  const spec = mergePreprocess(stored, given);
  const hasGiven = Object.keys(given).length > 0;
  const from = stored ? (hasGiven ? 'metadata+flags' : 'metadata') : hasGiven ? 'flags' : 'none';
  if (!normalises(spec)) {
    return { spec, from, warning: `no normalisation given (no --scale/--mean/--std${stored ? '' : `, no '${PREPROCESS_KEY}' metadata in the model`}): feeding raw pixel values` };
  }
  return { spec, from };
}
