/** A data set: a source of raw samples plus the preprocessing that turns them into model inputs. */
import { ShearsError } from '../errors.js';
import { DataType } from '../ir/dtype.js';
import type { Dim } from '../ir/graph.js';
import type { Feeds } from './feeds.js';
import { fitToInput, outputShape, preprocessImage, type PreprocessSpec } from './preprocess.js';
import { permutation, sampleIndices } from '../random.js';
import type { Batch, BatchOptions, RawSample, Source } from './types.js';

export class Dataset {
  /**
   * @param source where the samples come from
   * @param preprocess how images become inputs
   * @param sampleShape per-sample shape the consumer (a model input) expects; null entries are free
   * @param index the source indices this data set holds (a subset), in order; undefined: all
   * @param extra the feeds of the model's other inputs (data/feeds.ts), and whether array samples that read as
   *   images feed the model as the arrays they are (a model input that is not an image: see forInput)
   */
  constructor(
    readonly source: Source,
    readonly preprocess: PreprocessSpec = {},
    readonly sampleShape?: readonly (number | null)[],
    private readonly index?: Int32Array,
    readonly extra: DatasetExtra = {},
  ) {}

  /** The feeds of the model's other inputs (multi-input and stateful models), if any. */
  get feeds(): Feeds | undefined {
    return this.extra.feeds;
  }

  /**
   * The data set with feeds for the model's other inputs; `feedData` opens the data sets of per-sample feeds
   * (shaped for `inputs`, the model's input declarations), which must hold as many samples as this one's source.
   */
  withFeeds(feeds: Feeds | undefined, feedData?: { open: (spec: string) => Dataset; inputs: readonly { name: string; type?: { shape?: Dim[] } }[] }): Dataset {
    const { feeds: _, feedData: _d, ...rest } = this.extra;
    const extra: DatasetExtra = feeds ? { ...rest, feeds } : rest;
    for (const [name, spec] of Object.entries(feeds?.feeds ?? {})) {
      if (spec.kind !== 'data') continue;
      if (!feedData) throw new ShearsError(`--feed ${name}=${spec.spec}: per-sample data feeds need a way to open data sets here`);
      const shape = feedData.inputs.find((i) => i.name === name)?.type?.shape;
      const d = feedData.open(spec.spec).forInput(shape);
      if (d.size !== this.source.size) throw new ShearsError(`--feed ${name}=${spec.spec}: it holds ${d.size} samples, the data set ${this.source.size}: sample i of each goes together`);
      (extra.feedData ??= {})[name] = d;
    }
    return new Dataset(this.source, this.preprocess, this.sampleShape, this.index, extra);
  }

  get size(): number {
    return this.index ? this.index.length : this.source.size;
  }

  /** The element type of the input tensors batches hold (float32; token data: int64). */
  get inputType(): number {
    return DataType.FLOAT;
  }

  get hasLabels(): boolean {
    return this.source.labels !== undefined;
  }

  get classes(): string[] | undefined {
    return this.source.classes;
  }

  get description(): string {
    return this.index ? `${this.source.description}, ${this.index.length} of ${this.source.size} samples` : this.source.description;
  }

  /** Source index of sample i. */
  sourceIndex(i: number): number {
    return this.index ? this.index[i]! : i;
  }

  /** Label of sample i, if the data set has labels. */
  label(i: number): number | undefined {
    return this.source.labels?.[this.sourceIndex(i)];
  }

  withPreprocess(spec: PreprocessSpec, sampleShape?: readonly (number | null)[]): Dataset {
    return new Dataset(this.source, spec, sampleShape ?? this.sampleShape, this.index, this.extra);
  }

  /**
   * Adapts the data set to a model input: fills layout and color from the input shape where the spec leaves
   * them open, and checks every sample against the input's per-sample shape. Image preprocessing is for image
   * inputs ([N, C, H, W] or [N, H, W, C]): for an input of any other rank, array samples (npy, npz, IDX) feed it
   * as the arrays they are ([N, 25, 96] sequence x features is not read as 25 x 96 gray images).
   */
  forInput(inputShape: readonly Dim[] | undefined, spec: PreprocessSpec = this.preprocess): Dataset {
    const fit = fitToInput(spec, inputShape);
    const tensors = inputShape !== undefined && inputShape.length !== 4;
    return new Dataset(this.source, fit.spec, fit.sampleShape, this.index, { ...this.extra, tensors });
  }

  /** The samples at positions `idx` of this data set. */
  subset(idx: ArrayLike<number>): Dataset {
    const map = new Int32Array(idx.length);
    for (let k = 0; k < idx.length; k++) {
      const i = idx[k]!;
      if (!Number.isInteger(i) || i < 0 || i >= this.size) throw new ShearsError(`sample index ${i} is outside the data set (${this.size} samples)`);
      map[k] = this.sourceIndex(i);
    }
    return new Dataset(this.source, this.preprocess, this.sampleShape, map, this.extra);
  }

  /** n samples chosen with a seed (deterministic: the same n and seed give the same samples), in data-set order. */
  sample(n: number, seed = 0): Dataset {
    if (!Number.isInteger(n) || n <= 0) throw new ShearsError(`sample size must be a positive integer, not ${n}`);
    return this.subset(sampleIndices(this.size, n, seed));
  }

  /** Batches of preprocessed samples, read lazily (one batch in memory at a time). */
  async *batches(batchSize: number, opts: BatchOptions = {}): AsyncGenerator<Batch> {
    if (!Number.isInteger(batchSize) || batchSize <= 0) throw new ShearsError(`batch size must be a positive integer, not ${batchSize}`);
    const n = Math.min(this.size, opts.limit ?? Infinity);
    const order = opts.shuffle ? permutation(this.size, opts.seed ?? 0).subarray(0, n) : undefined;
    const state: ShapeState = {};
    for (let start = 0; start < n; start += batchSize) {
      const pos: number[] = [];
      for (let k = start; k < Math.min(n, start + batchSize); k++) pos.push(order ? order[k]! : k);
      yield await this.readBatch(pos, state);
    }
  }

  /** One batch of the samples at positions `pos`. */
  async readBatch(pos: readonly number[], state: ShapeState = {}): Promise<Batch> {
    const src = pos.map((p) => this.sourceIndex(p));
    const raw = await this.source.read(src);
    const x = this.assemble(raw, src, state);
    const sizes = new Int32Array(raw.length * 2);
    raw.forEach((s, k) => {
      if (s.kind === 'image') {
        sizes[2 * k] = s.image.height;
        sizes[2 * k + 1] = s.image.width;
      }
    });
    const batch: Batch = { x, indices: Int32Array.from(pos), sizes };
    const fd = this.extra.feedData;
    if (fd) batch.feeds = Object.fromEntries(await Promise.all(Object.entries(fd).map(async ([k, d]) => [k, (await d.readBatch(src)).x] as const)));
    const labels = this.source.labels;
    if (labels) batch.labels = Int32Array.from(src, (i) => labels[i]!);
    return batch;
  }

  private assemble(given: RawSample[], src: number[], state: ShapeState) {
    const raw = this.extra.tensors ? given.map(asTensor) : given;
    const shapes = raw.map((s) => sampleShapeOf(s, this.preprocess));
    const first = shapes[0]!;
    const per = first.reduce((a, b) => a * b, 1);
    const data = new Float32Array(per * raw.length);
    raw.forEach((s, k) => {
      const shape = shapes[k]!;
      const name = this.source.itemName(src[k]!);
      this.checkShape(shape, name, state, s.kind === 'tensor');
      if (s.kind === 'image') preprocessImage(s.image, this.preprocess, data, k * per, name);
      else copyTensor(s.data, this.preprocess, data, k * per, name);
    });
    return { dtype: DataType.FLOAT, dims: [raw.length, ...first], data };
  }

  private checkShape(shape: number[], name: string, state: ShapeState, tensor: boolean): void {
    const what = (s: readonly (number | null)[]) => (s.length ? s.map((d) => d ?? '?').join('x') : 'a scalar');
    const expect = this.sampleShape;
    if (expect && (expect.length !== shape.length || expect.some((d, i) => d !== null && d !== shape[i]))) {
      if (tensor) throw new ShearsError(`sample '${name}' is ${what(shape)}, the model input expects ${what(expect)} per sample (arrays that are not images feed the model as they are: give an array of [N, ${expect.map((d) => d ?? '?').join(', ')}])`);
      throw new ShearsError(`sample '${name}' is ${what(shape)} after preprocessing, the model input expects ${what(expect)} per sample (adjust --resize/--crop/--color/--layout)`);
    }
    if (!state.shape) {
      state.shape = shape;
      state.first = name;
    } else if (state.shape.length !== shape.length || state.shape.some((d, i) => d !== shape[i])) {
      throw new ShearsError(`sample '${name}' is ${what(shape)} after preprocessing, but '${state.first}' is ${what(state.shape)}: sizes must match (give --resize/--crop, or --color to unify channels)`);
    }
  }
}

export interface DatasetExtra {
  feeds?: Feeds;
  /** Data sets feeding other inputs sample by sample (full sets, read at the same source indices), by input. */
  feedData?: Record<string, Dataset>;
  tensors?: boolean;
}

/** An array sample read as an image, as the array it is (other samples unchanged). */
function asTensor(s: RawSample): RawSample {
  if (s.kind !== 'image' || !s.image.array) return s;
  const a = s.image.array;
  return { kind: 'tensor', dims: a.dims, data: a.data instanceof Float32Array ? a.data : Float32Array.from(a.data) };
}

/** Per-iteration memory of the first sample shape, so every batch of a pass matches. */
export interface ShapeState {
  shape?: number[];
  first?: string;
}

function sampleShapeOf(s: RawSample, spec: PreprocessSpec): number[] {
  if (s.kind === 'image') return outputShape(spec, s.image.height, s.image.width, s.image.channels);
  return s.dims;
}

function copyTensor(src: Float32Array, spec: PreprocessSpec, out: Float32Array, offset: number, name: string): void {
  if (spec.resize !== undefined || spec.crop !== undefined) throw new ShearsError(`sample '${name}' is not an image: --resize/--crop do not apply`);
  if (spec.color !== undefined) throw new ShearsError(`sample '${name}' is not an image (it feeds the model as the array it is): --color does not apply`);
  if ((spec.mean?.length ?? 1) > 1 || (spec.std?.length ?? 1) > 1) throw new ShearsError(`sample '${name}' is not an image: per-channel --mean/--std do not apply (give one value)`);
  const scale = spec.scale ?? 1;
  const m = Math.fround(spec.mean?.[0] ?? 0);
  const sd = Math.fround(spec.std?.[0] ?? 1);
  for (let i = 0; i < src.length; i++) out[offset + i] = Math.fround(Math.fround(src[i]! * scale) - m) / sd;
}
