/**
 * Token data for language models: a stream of token ids cut into windows of the model's context length T.
 *
 *   tokens:FILE.bin[,context=T]   raw bytes, one token per byte (byte-level models: vocabulary 256)
 *   tokens:FILE.bin,dtype=uint16|int32[,context=T]   raw little-endian token ids (tokenized corpora)
 *   tokens:FILE.npy[,context=T]   a 1-D integer array of token ids
 *
 * Sample i of the full data set is the window starting at token i: the input is tokens [i, i+T), the targets the
 * next tokens [i+1, i+T+1), so there are L - T samples in a stream of L tokens. A seeded `sample(n)` draws windows
 * at random offsets (calibration); `evenly(n)` takes n windows evenly spaced over the stream, starting at
 * floor(k * (L - T - 1) / (n - 1)) for k = 0..n-1 (evaluation), and so do `batches(..., { limit })` on the
 * full set. Batches feed an int64 [B, T] input and carry the targets [B, T] (Batch.targets).
 *
 * T is the model input's static sequence dimension, or `context=T` (the CLI's --context) where that dimension
 * is symbolic: a T larger than a static dimension, than the stream allows, or different from a static one is
 * refused (`bindTokens`).
 */
import { ShearsError } from '../errors.js';
import { DataType, dtypeName } from '../ir/dtype.js';
import type { Dim, Model } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import { permutation, sampleIndices } from '../random.js';
import { Dataset } from './dataset.js';
import type { Feeds } from './feeds.js';
import { hasFeeds, modelInputs } from './feeds.js';
import { parseNpy } from './npy.js';
import type { PreprocessSpec } from './preprocess.js';
import { readAll } from './read.js';
import type { Batch, BatchOptions, RawSample, Source } from './types.js';

/** A stream of token ids read from a file. */
export interface TokenStream {
  ids: Uint8Array | Int32Array;
  /** The largest id in the stream. */
  maxId: number;
  /** Where the tokens come from ('val.bin (546,627 byte tokens)'). */
  description: string;
  path: string;
}

/** How the ids of a raw token file are stored: one byte each (default), or little-endian uint16 / int32. */
export type TokenWidth = 'uint8' | 'uint16' | 'int32';

/**
 * Reads a token file: .npy (a 1-D integer array), else raw ids: bytes (one token per byte), or little-endian
 * uint16 / int32 ids with `width` (the layout of tokenized corpora such as nanoGPT's and Megatron's .bin files).
 */
export function readTokenFile(path: string, width: TokenWidth = 'uint8'): TokenStream {
  const bytes = readAll(path);
  if (width !== 'uint8' && !/\.npy$/i.test(path)) {
    const size = width === 'uint16' ? 2 : 4;
    if (bytes.length === 0) throw new ShearsError(`'${path}' is empty: no tokens`);
    if (bytes.length % size !== 0) throw new ShearsError(`'${path}' is ${bytes.length} bytes, not a whole number of ${width} token ids (${size} bytes each)`);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const ids = new Int32Array(bytes.length / size);
    let maxId = 0;
    for (let i = 0; i < ids.length; i++) {
      const v = size === 2 ? view.getUint16(2 * i, true) : view.getInt32(4 * i, true);
      if (v < 0) throw new ShearsError(`'${path}': token ${i} is ${v}, not a token id (int32 ids are non-negative)`);
      ids[i] = v;
      if (v > maxId) maxId = v;
    }
    return { ids, maxId, description: `${path} (${ids.length.toLocaleString('en-US')} ${width} tokens)`, path };
  }
  if (/\.npy$/i.test(path)) {
    const arr = parseNpy(bytes, path);
    if (arr.dims.length !== 1) throw new ShearsError(`'${path}': token ids must be a 1-D array, this one is (${arr.dims.join(', ')})`);
    const ids = new Int32Array(arr.data.length);
    let maxId = -1;
    for (let i = 0; i < ids.length; i++) {
      const v = arr.data[i]!;
      if (!Number.isInteger(v) || v < 0 || v >= 2 ** 24) throw new ShearsError(`'${path}': element ${i} is ${v}, not a token id (a non-negative integer below 2^24)`);
      ids[i] = v;
      if (v > maxId) maxId = v;
    }
    if (ids.length === 0) throw new ShearsError(`'${path}' holds no tokens`);
    return { ids, maxId, description: `${path} (${ids.length.toLocaleString('en-US')} tokens)`, path };
  }
  if (bytes.length === 0) throw new ShearsError(`'${path}' is empty: no tokens`);
  let maxId = 0;
  for (let i = 0; i < bytes.length; i++) if (bytes[i]! > maxId) maxId = bytes[i]!;
  return { ids: bytes, maxId, description: `${path} (${bytes.length.toLocaleString('en-US')} byte tokens)`, path };
}

/** Parses the options after the path of a tokens: spec ('context=256'). */
export function parseTokenOptions(spec: string, extra: readonly string[]): { context?: number; width?: TokenWidth } {
  const out: { context?: number; width?: TokenWidth } = {};
  for (const part of extra) {
    const w = /^(?:dtype|width)=(uint8|uint16|int32)$/.exec(part.trim());
    if (w) {
      out.width = w[1] as TokenWidth;
      continue;
    }
    const m = /^(?:context|T)=(\d+)$/.exec(part.trim());
    if (!m) throw new ShearsError(`data spec '${spec}': '${part}' is not a token data option (context=T, dtype=uint8|uint16|int32)`);
    const t = Number(m[1]);
    if (!Number.isSafeInteger(t) || t < 1) throw new ShearsError(`data spec '${spec}': context must be a positive integer, not ${m[1]}`);
    out.context = t;
  }
  return out;
}

/** The source under a token data set (for code that looks at Dataset.source): windows as float arrays. */
class TokenWindows implements Source {
  readonly labels = undefined;
  constructor(private readonly stream: TokenStream, private readonly context: number | undefined) {}
  get size(): number {
    return this.context === undefined ? 0 : Math.max(0, this.stream.ids.length - this.context);
  }
  get description(): string {
    return `tokens ${this.stream.description}${this.context !== undefined ? `, windows of ${this.context}` : ''}`;
  }
  async read(indices: readonly number[]): Promise<RawSample[]> {
    const t = this.context;
    if (t === undefined) throw new ShearsError(`token data ${this.stream.path}: the window length is not known yet`);
    return indices.map((i) => ({ kind: 'tensor', dims: [t], data: Float32Array.from(this.stream.ids.subarray(i, i + t)) }));
  }
  itemName(i: number): string {
    return `${this.stream.path}[${i}:${i + (this.context ?? 0)}]`;
  }
}

/**
 * A data set of token windows (see the module comment). Until its window length is known (`withContext`, or
 * `bindTokens` against a model) it holds no samples.
 */
export class TokenDataset extends Dataset {
  constructor(
    readonly stream: TokenStream,
    readonly context: number | undefined,
    /** Window start offsets this data set holds, in order; undefined: every offset. */
    private readonly offsets?: Int32Array,
    /** How the windows were chosen, for descriptions. */
    private readonly chosen = '',
  ) {
    super(new TokenWindows(stream, context), {}, context !== undefined ? [context] : undefined);
  }

  /** Token data feeds an integer input (int64 ids). */
  override get inputType(): number {
    return DataType.INT64;
  }

  override get size(): number {
    return this.offsets ? this.offsets.length : this.source.size;
  }

  override get description(): string {
    return `${this.source.description}${this.chosen ? `, ${this.chosen}` : ''}`;
  }

  /** Whether this is every window of the stream (not a subset). */
  get whole(): boolean {
    return this.offsets === undefined;
  }

  /** Token count of the stream. */
  get tokens(): number {
    return this.stream.ids.length;
  }

  override sourceIndex(i: number): number {
    return this.offsets ? this.offsets[i]! : i;
  }

  /** The same stream in windows of `t` tokens (a subset keeps its offsets, checked to fit). */
  withContext(t: number): TokenDataset {
    if (!Number.isSafeInteger(t) || t < 1) throw new ShearsError(`the context length must be a positive integer, not ${t}`);
    const L = this.stream.ids.length;
    if (L < t + 1) throw new ShearsError(`${this.stream.description} is too short for windows of ${t} tokens: it needs at least ${t + 1} (a window and the token after it)`);
    if (t === this.context) return this;
    if (this.offsets && this.offsets.some((o) => o + t + 1 > L)) throw new ShearsError(`token windows chosen for ${this.context} tokens do not fit windows of ${t}`);
    return new TokenDataset(this.stream, t, this.offsets, this.chosen);
  }

  private need(): number {
    if (this.context === undefined) throw new ShearsError(`token data ${this.stream.path}: the window length is not known (give tokens:FILE,context=T or --context T)`);
    return this.context;
  }

  override withPreprocess(_spec: PreprocessSpec): Dataset {
    return this;
  }

  override withFeeds(feeds: Feeds | undefined): Dataset {
    if (hasFeeds(feeds)) throw new ShearsError(`token data (${this.stream.path}) feeds a model's one input: --feed/--carry are not supported with it`);
    return this;
  }

  /** Binds the window length to a model input's shape: see bindTokens. */
  override forInput(inputShape: readonly Dim[] | undefined): Dataset {
    return bindContext(this, inputShape, 'the model input');
  }

  override subset(idx: ArrayLike<number>): TokenDataset {
    this.need();
    const map = new Int32Array(idx.length);
    for (let k = 0; k < idx.length; k++) {
      const i = idx[k]!;
      if (!Number.isInteger(i) || i < 0 || i >= this.size) throw new ShearsError(`window index ${i} is outside the token data (${this.size} windows)`);
      map[k] = this.sourceIndex(i);
    }
    return new TokenDataset(this.stream, this.context, map, `${idx.length} windows`);
  }

  /** `n` windows at seeded random offsets (distinct, in stream order). */
  override sample(n: number, seed = 0): TokenDataset {
    if (!Number.isInteger(n) || n <= 0) throw new ShearsError(`sample size must be a positive integer, not ${n}`);
    const s = this.subset(sampleIndices(this.size, n, seed));
    return new TokenDataset(this.stream, this.context, s.offsets, `${s.size} windows at random offsets (seed ${seed})`);
  }

  /** `n` windows evenly spaced over the stream: starts floor(k * (L - T - 1) / (n - 1)), k = 0..n-1. */
  evenly(n: number): TokenDataset {
    const t = this.need();
    if (!Number.isInteger(n) || n <= 0) throw new ShearsError(`the number of windows must be a positive integer, not ${n}`);
    const last = this.stream.ids.length - t - 1;
    const offsets = new Int32Array(n);
    for (let k = 0; k < n; k++) offsets[k] = n === 1 ? 0 : Math.floor((k * last) / (n - 1));
    return new TokenDataset(this.stream, t, offsets, `${n} windows evenly spaced`);
  }

  override async *batches(batchSize: number, opts: BatchOptions = {}): AsyncGenerator<Batch> {
    if (!Number.isInteger(batchSize) || batchSize <= 0) throw new ShearsError(`batch size must be a positive integer, not ${batchSize}`);
    this.need();
    // The first N windows of the whole stream would be N overlapping windows at its start: take them evenly spaced.
    if (this.whole && opts.limit !== undefined && opts.limit < this.size && !opts.shuffle) {
      yield* this.evenly(opts.limit).batches(batchSize);
      return;
    }
    const n = Math.min(this.size, opts.limit ?? Infinity);
    const order = opts.shuffle ? permutation(this.size, opts.seed ?? 0).subarray(0, n) : undefined;
    for (let start = 0; start < n; start += batchSize) {
      const pos: number[] = [];
      for (let k = start; k < Math.min(n, start + batchSize); k++) pos.push(order ? order[k]! : k);
      yield await this.readBatch(pos);
    }
  }

  override async readBatch(pos: readonly number[]): Promise<Batch> {
    const t = this.need();
    const b = pos.length;
    const x = new BigInt64Array(b * t);
    const targets = new Int32Array(b * t);
    const ids = this.stream.ids;
    pos.forEach((p, k) => {
      if (!Number.isInteger(p) || p < 0 || p >= this.size) throw new ShearsError(`window index ${p} is outside the token data (${this.size} windows)`);
      const s = this.sourceIndex(p);
      for (let j = 0; j < t; j++) {
        x[k * t + j] = BigInt(ids[s + j]!);
        targets[k * t + j] = ids[s + j + 1]!;
      }
    });
    const xt: Tensor = { dtype: DataType.INT64, dims: [b, t], data: x };
    return { x: xt, indices: Int32Array.from(pos), targets };
  }
}

/** Opens token data: `tokens:PATH[,context=T]` parsed into its path and options. */
export function openTokens(path: string, opts: { context?: number; width?: TokenWidth } = {}): TokenDataset {
  const ds = new TokenDataset(readTokenFile(path, opts.width), undefined);
  return opts.context !== undefined ? ds.withContext(opts.context) : ds;
}

function bindContext(ds: TokenDataset, shape: readonly Dim[] | undefined, what: string): TokenDataset {
  if (shape !== undefined && shape.length !== 2) throw new ShearsError(`token data feeds [N, T] token ids; ${what} is [${shape.join(', ')}]`);
  const d = shape?.[1];
  const fixed = typeof d === 'number' && d > 0 ? d : undefined;
  if (fixed !== undefined) {
    if (ds.context !== undefined && ds.context !== fixed) throw new ShearsError(`the context length ${ds.context} does not fit ${what} [${shape!.join(', ')}], which takes windows of exactly ${fixed} tokens`);
    return ds.withContext(fixed);
  }
  if (ds.context === undefined) {
    throw new ShearsError(`${what} [${(shape ?? ['?', '?']).join(', ')}] takes sequences of any length: give the window length (tokens:${ds.stream.path},context=T or --context T)`);
  }
  return ds;
}

/**
 * Binds token data to a model: the window length from the data input's static sequence dimension (or the data's
 * own context where it is symbolic), the input's element type (an integer type), and, where the first output
 * declares its last dimension (the vocabulary), every token id below it.
 */
export function bindTokens(ds: TokenDataset, model: Model, what = 'the model'): TokenDataset {
  const ins = modelInputs(model);
  const input = ins.length === 1 ? ins[0]! : undefined;
  if (!input) throw new ShearsError(`token data feeds one input, and ${what} has ${ins.length}: ${ins.map((i) => i.name).join(', ')}`);
  const t = input.type?.elemType;
  if (t !== undefined && t !== DataType.INT64) {
    throw new ShearsError(`token data feeds int64 token ids, and ${what}'s input '${input.name}' is ${dtypeName(t)}`);
  }
  const bound = bindContext(ds, input.type?.shape, `${what}'s input '${input.name}'`);
  const v = vocabularyOf(model);
  if (v !== undefined) checkVocabulary(bound, v, what);
  return bound;
}

/** The vocabulary size a language model's first output declares (its last dimension), if static. */
export function vocabularyOf(model: Model): number | undefined {
  const shape = model.graph.outputs[0]?.type?.shape;
  const v = shape?.[shape.length - 1];
  return typeof v === 'number' && v > 0 ? v : undefined;
}

/** Refuses token data holding ids the model's vocabulary (of `v` entries) does not have. */
export function checkVocabulary(ds: TokenDataset, v: number, what = 'the model'): void {
  if (ds.stream.maxId >= v) {
    const at = ds.stream.ids.findIndex((x) => x >= v);
    throw new ShearsError(`${ds.stream.path}: token ${at} is id ${ds.stream.ids[at]}, outside ${what}'s vocabulary of ${v} (its logits' last dimension)`);
  }
}

export function isTokenData(ds: Dataset): ds is TokenDataset {
  return ds instanceof TokenDataset;
}
