/**
 * Feeds for the inputs of a model that a data set does not give: multi-input and stateful models (a sample-rate
 * scalar, recurrent state). A data set feeds exactly one input (the data input); every other input gets a feed:
 *
 *   NAME=const:V[@D1xD2...]   every element V, in the input's declared element type and shape (the shape may be
 *                             given after '@'; a symbolic first dimension is the batch size)
 *   NAME=zeros[@D1xD2...]     zeros, likewise (the usual initial state of a recurrent model)
 *   NAME=npy:FILE.npy (idx:, folder:, npz: specs too)   per-sample data: sample i of it goes with sample i of
 *                             the data set (same count), as the arrays are (image preprocessing for image inputs)
 *
 * and state that a model carries from one call to the next is fed back: `OUT=IN` (carry) feeds output OUT of
 * call k as input IN of call k + 1 (IN's own feed, usually zeros, is the first call's). A carried state makes the
 * samples a sequence: they run one per call (batch 1), in data-set order.
 *
 * The CLI spells them `--feed NAME=SPEC` and `--carry OUT=IN` (repeatable), recipes `feeds: { NAME: SPEC }` and
 * `carry: { OUT: IN }`; `--data` (and `--calib`, `--train`, `--val`, recipe roles) keeps naming the data set.
 */
import { ShearsError } from '../errors.js';
import { DataType, dtypeName } from '../ir/dtype.js';
import type { Dim, Model, ValueInfo } from '../ir/graph.js';
import { createTensor, type Tensor } from '../ir/tensor.js';

export type FeedSpec =
  | { kind: 'const'; value: number; shape?: number[] }
  | { kind: 'zeros'; shape?: number[] }
  /** A second data set (idx:, folder:, npy:, npz: spec), sample i feeding this input with sample i of the data. */
  | { kind: 'data'; spec: string };

/** The feeds of a run: per input name, and the carried states (output -> input). */
export interface Feeds {
  feeds: Record<string, FeedSpec>;
  /** [output, input] pairs. */
  carry: [string, string][];
}

export const NO_FEEDS: Feeds = { feeds: {}, carry: [] };

export function hasFeeds(f: Feeds | undefined): f is Feeds {
  return f !== undefined && (Object.keys(f.feeds).length > 0 || f.carry.length > 0);
}

const FEED_HELP = 'const:V[@SHAPE], zeros[@SHAPE] or a data spec npy:FILE (idx:, folder:, npz:), e.g. const:16000, zeros, zeros@2x1x64';

function parseShape(s: string, what: string): number[] {
  if (s === '' || s === 'scalar') return [];
  const dims = s.split(/[x,]/).map(Number);
  if (dims.some((d) => !Number.isInteger(d) || d <= 0)) throw new ShearsError(`${what}: '${s}' is not a shape (D1xD2x..., or 'scalar')`);
  return dims;
}

/** Parses a feed spec (see the module comment). */
export function parseFeedSpec(text: string, what: string): FeedSpec {
  const t = text.trim();
  if (/^(idx|folder|npy|npz):./i.test(t)) return { kind: 'data', spec: t };
  const at = t.indexOf('@');
  const body = at >= 0 ? t.slice(0, at) : t;
  const shape = at >= 0 ? parseShape(t.slice(at + 1), what) : undefined;
  const withShape = <T extends FeedSpec>(f: T): T => (shape ? { ...f, shape } : f);
  if (body === 'zeros') return withShape({ kind: 'zeros' });
  const m = /^const:(.+)$/.exec(body);
  if (m) {
    const v = Number(m[1]);
    if (m[1]!.trim() === '' || !Number.isFinite(v)) throw new ShearsError(`${what}: '${m[1]}' is not a number`);
    return withShape({ kind: 'const', value: v });
  }
  throw new ShearsError(`${what}: '${text}' is not a feed (${FEED_HELP}; the data set itself is given with --data/--calib/--train)`);
}

export function formatFeedSpec(f: FeedSpec): string {
  if (f.kind === 'data') return f.spec;
  return `${f.kind === 'const' ? `const:${f.value}` : 'zeros'}${f.shape ? `@${f.shape.length ? f.shape.join('x') : 'scalar'}` : ''}`;
}

function splitPair(s: string, flag: string, form: string): [string, string] {
  const eq = s.indexOf('=');
  if (eq <= 0 || eq === s.length - 1) throw new ShearsError(`${flag} '${s}': expected ${form}`);
  return [s.slice(0, eq).trim(), s.slice(eq + 1).trim()];
}

/** Feeds from the CLI's `--feed NAME=SPEC` and `--carry OUT=IN` values. */
export function feedsFromArgs(feed: readonly string[] = [], carry: readonly string[] = []): Feeds {
  const out: Feeds = { feeds: {}, carry: [] };
  for (const s of feed) {
    const [name, spec] = splitPair(s, '--feed', `NAME=SPEC (${FEED_HELP})`);
    if (name in out.feeds) throw new ShearsError(`--feed: input '${name}' is fed twice`);
    out.feeds[name] = parseFeedSpec(spec, `--feed ${name}`);
  }
  for (const s of carry) out.carry.push(splitPair(s, '--carry', 'OUT=IN (an output fed back as an input on the next call), e.g. hn=h'));
  return out;
}

/** Feeds from a recipe's `feeds` and `carry` objects (validated; `what` starts messages). */
export function feedsFromRecipe(feeds: unknown, carry: unknown, what: string): Feeds {
  const out: Feeds = { feeds: {}, carry: [] };
  const obj = (v: unknown, key: string): Record<string, unknown> => {
    if (v === undefined) return {};
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ShearsError(`${what}: ${key} must be an object { NAME: SPEC }`);
    return v as Record<string, unknown>;
  };
  for (const [k, v] of Object.entries(obj(feeds, 'feeds'))) {
    if (typeof v !== 'string' && typeof v !== 'number') throw new ShearsError(`${what}: feeds.${k} must be a string (${FEED_HELP})`);
    out.feeds[k] = parseFeedSpec(String(v), `${what}: feeds.${k}`);
  }
  for (const [k, v] of Object.entries(obj(carry, 'carry'))) {
    if (typeof v !== 'string' || v === '') throw new ShearsError(`${what}: carry.${k} must name the input that output '${k}' feeds on the next call`);
    out.carry.push([k, v]);
  }
  return out;
}

/** The recipe form of feeds (for `--save-recipe`). */
export function feedsToRecipe(f: Feeds): { feeds?: Record<string, string>; carry?: Record<string, string> } {
  const out: { feeds?: Record<string, string>; carry?: Record<string, string> } = {};
  if (Object.keys(f.feeds).length) out.feeds = Object.fromEntries(Object.entries(f.feeds).map(([k, v]) => [k, formatFeedSpec(v)]));
  if (f.carry.length) out.carry = Object.fromEntries(f.carry);
  return out;
}

/** Feeds of `over` replace those of `base` (by input name; carries of `over` replace those of the same output). */
export function mergeFeeds(base: Feeds | undefined, over: Feeds | undefined): Feeds {
  const carry = new Map(base?.carry ?? []);
  for (const [o, i] of over?.carry ?? []) carry.set(o, i);
  return { feeds: { ...(base?.feeds ?? {}), ...(over?.feeds ?? {}) }, carry: [...carry] };
}

/**
 * The inputs of a model a caller must feed: graph inputs that are not initializers (old exporters list
 * initializers as inputs too; an initializer sharing an input's name is its default value).
 */
export function modelInputs(model: Model): ValueInfo[] {
  const inits = model.graph.initializers;
  return model.graph.inputs.filter((i) => !inits.has(i.name));
}

function describeInput(i: ValueInfo): string {
  const t = i.type?.elemType;
  const shape = i.type?.shape;
  return `${i.name} (${t !== undefined ? dtypeName(t) : '?'} ${shape ? `[${shape.join(', ')}]` : '[?]'})`;
}

/** A suggested feed for an input: its name says what it is likely to be. */
function suggestion(i: ValueInfo): string {
  if (/^(sr|sample_?rate)$/i.test(i.name)) return `--feed ${i.name}=const:16000`;
  const t = i.type?.elemType;
  if (t !== undefined && t !== DataType.FLOAT) return `--feed ${i.name}=const:V`;
  return `--feed ${i.name}=zeros`;
}

/** How the inputs of a model are fed: the one the data set gives, and the others' feeds. */
export interface InputPlan {
  /** The input the data set feeds (float32; int64 token ids for token data). */
  data: ValueInfo;
  /** The other inputs and their feeds. */
  fixed: { input: ValueInfo; spec: FeedSpec }[];
  /** Carried states: [output, input]. */
  carry: [string, string][];
}

/**
 * Which input the data set feeds and how every other input is fed, checked against the model before any work:
 * a feed or carry naming no input/output, a model with inputs left unfed, or no input left for the data set is
 * refused with a message listing the model's inputs and how to feed them.
 */
export function planInputs(model: Model, feeds: Feeds = NO_FEEDS, what = 'the model', dataType?: number): InputPlan {
  const ins = modelInputs(model);
  const list = () => ins.map(describeInput).join(', ');
  for (const name of Object.keys(feeds.feeds)) {
    if (!ins.some((i) => i.name === name)) throw new ShearsError(`--feed ${name}: ${what} has no input '${name}' (inputs: ${list()})`);
  }
  const outs = model.graph.outputs.map((o) => o.name);
  for (const [o, i] of feeds.carry) {
    if (!outs.includes(o)) throw new ShearsError(`--carry ${o}=${i}: ${what} has no output '${o}' (outputs: ${outs.join(', ')})`);
    if (!ins.some((x) => x.name === i)) throw new ShearsError(`--carry ${o}=${i}: ${what} has no input '${i}' (inputs: ${list()})`);
    if (!(i in feeds.feeds)) throw new ShearsError(`--carry ${o}=${i}: the carried input '${i}' needs a feed for the first call (e.g. --feed ${i}=zeros)`);
  }
  for (const [name, spec] of Object.entries(feeds.feeds)) {
    const t = ins.find((i) => i.name === name)?.type?.elemType;
    if (spec.kind === 'data' && t !== undefined && t !== DataType.FLOAT) throw new ShearsError(`--feed ${name}=${spec.spec}: input '${name}' is ${dtypeName(t)}, data sets feed float32 (give it const:V or zeros)`);
  }
  const open = ins.filter((i) => !(i.name in feeds.feeds));
  if (open.length === 0) {
    throw new ShearsError(`every input of ${what} has a --feed (inputs: ${list()}): one of them must take the data set (drop its --feed)`);
  }
  if (open.length > 1) {
    const pick = open.find((i) => i.type?.elemType === DataType.FLOAT) ?? open[0]!;
    const rest = open.filter((i) => i !== pick);
    throw new ShearsError(
      `${what} has ${ins.length} inputs: ${list()}. The data set feeds one of them; give every other one a feed: ` +
        `--feed NAME=const:V or --feed NAME=zeros (shaped from the input's declaration; @D1xD2 gives a shape) or --feed NAME=npy:FILE (per-sample data), ` +
        `and --carry OUT=IN for state fed back between calls. E.g. ${rest.map(suggestion).join(' ')}` +
        `${ins.length === open.length ? '' : ` (fed now: ${ins.filter((i) => !open.includes(i)).map((i) => i.name).join(', ')})`}`,
    );
  }
  const data = open[0]!;
  const t = data.type?.elemType;
  // Data sets feed float32; token data (data/tokens.ts) int64 token ids. `dataType`: what this run's data feeds
  // (unknown: either is accepted).
  if (t !== undefined && t !== DataType.FLOAT && !(t === DataType.INT64 && (dataType === undefined || dataType === DataType.INT64))) {
    if (t === DataType.INT64) throw new ShearsError(`input '${data.name}' is int64 (token ids?): image and array data sets feed float32; token data (tokens:FILE.bin, tokens:FILE.npy) feeds int64 ids`);
    throw new ShearsError(`input '${data.name}' is ${dtypeName(t)}: data sets feed float32 (inputs: ${list()}; give '${data.name}' a --feed, and leave the float32 data input without one)`);
  }
  if (dataType === DataType.INT64 && t !== undefined && t !== DataType.INT64) throw new ShearsError(`token data feeds int64 token ids, and ${what}'s input '${data.name}' is ${dtypeName(t)}`);
  return {
    data,
    fixed: ins.filter((i) => i.name in feeds.feeds).map((input) => ({ input, spec: feeds.feeds[input.name]! })),
    carry: feeds.carry,
  };
}

const FEEDABLE: number[] = [DataType.FLOAT, DataType.DOUBLE, DataType.INT64, DataType.INT32, DataType.INT8, DataType.UINT8, DataType.BOOL, DataType.FLOAT16];

/**
 * The tensor a feed gives an input, for a batch of `batch` samples: the feed's shape, else the input's declared
 * shape with a symbolic first dimension as the batch size (another symbolic dimension is refused: give a shape).
 */
export function feedTensor(input: ValueInfo, spec: FeedSpec, batch: number): Tensor {
  if (spec.kind === 'data') throw new ShearsError(`--feed ${input.name}: per-sample data (${spec.spec}) has no constant value`);
  const t = input.type?.elemType ?? DataType.FLOAT;
  if (!FEEDABLE.includes(t)) throw new ShearsError(`--feed ${input.name}: input '${input.name}' is ${dtypeName(t)}, which a constant feed cannot give`);
  let dims = spec.shape;
  if (!dims) {
    const declared: Dim[] | undefined = input.type?.shape;
    if (!declared) throw new ShearsError(`--feed ${input.name}: input '${input.name}' declares no shape: give one (${formatFeedSpec(spec).split('@')[0]}@D1xD2...)`);
    dims = declared.map((d, i) => {
      if (typeof d === 'number' && d >= 0) return d;
      if (i === 0) return batch;
      throw new ShearsError(`--feed ${input.name}: dimension ${i} of input '${input.name}' [${declared.join(', ')}] is symbolic: give the shape (${formatFeedSpec(spec).split('@')[0]}@D1xD2...)`);
    });
  }
  const value = spec.kind === 'const' ? spec.value : 0;
  if (t === DataType.FLOAT16) throw new ShearsError(`--feed ${input.name}: float16 inputs cannot be fed a constant yet`);
  const tensor = createTensor(t, dims);
  if (value === 0) return tensor;
  if (t === DataType.INT64) {
    if (!Number.isInteger(value)) throw new ShearsError(`--feed ${input.name}: input '${input.name}' is int64, ${value} is not an integer`);
    (tensor.data as BigInt64Array).fill(BigInt(value));
  } else if (t === DataType.BOOL) (tensor.data as Uint8Array).fill(value ? 1 : 0);
  else {
    if (t !== DataType.FLOAT && t !== DataType.DOUBLE && !Number.isInteger(value)) throw new ShearsError(`--feed ${input.name}: input '${input.name}' is ${dtypeName(t)}, ${value} is not an integer`);
    (tensor.data as Float32Array).fill(value);
  }
  return tensor;
}

/**
 * The feeds of one run of a model over a sequence of batches: the fixed feeds, and carried states that follow
 * the model's own outputs (`update` after each call).
 */
export class FeedState {
  private state: Record<string, Tensor> = {};
  private readonly fixed = new Map<string, Tensor>();
  private batch = -1;

  constructor(readonly plan: InputPlan) {}

  /** The inputs for a call on data batch `x`; `perSample`: the batch's rows of the data-set feeds. */
  feeds(x: Tensor, perSample: Record<string, Tensor> = {}): Record<string, Tensor> {
    const b = x.dims[0] ?? 1;
    const out: Record<string, Tensor> = { [this.plan.data.name]: x };
    const carried = new Set(this.plan.carry.map(([, i]) => i));
    if (this.batch !== b) this.fixed.clear();
    for (const { input, spec } of this.plan.fixed) {
      const s = carried.has(input.name) ? this.state[input.name] : undefined;
      if (s) {
        out[input.name] = s;
        continue;
      }
      if (spec.kind === 'data') {
        const t = perSample[input.name];
        if (!t) throw new ShearsError(`--feed ${input.name}=${spec.spec}: the data set was not opened for this run (internal)`);
        out[input.name] = t;
        continue;
      }
      let t = this.fixed.get(input.name);
      if (!t) this.fixed.set(input.name, (t = feedTensor(input, spec, b)));
      out[input.name] = t;
    }
    this.batch = b;
    return out;
  }

  /** Takes the carried states from a call's outputs. */
  update(outputs: Record<string, Tensor>): void {
    for (const [o, i] of this.plan.carry) {
      const t = outputs[o];
      if (!t) throw new ShearsError(`--carry ${o}=${i}: the call gave no output '${o}'`);
      this.state[i] = t;
    }
  }

  /** The output names a call must fetch for the carried states. */
  get carriedOutputs(): string[] {
    return this.plan.carry.map(([o]) => o);
  }
}
