/**
 * The only module that runs models. Everything that executes a model (evaluation, calibration, repair,
 * training steps, benchmarks, cross-checks) goes through here, on the onnxruntime the installed adapter gives
 * (runtime.ts: onnxruntime-node by default in Node, onnxruntime-web in a browser).
 */
import { ShearsError } from '../errors.js';
import { DataType, dtypeName, ortTypeName } from '../ir/dtype.js';
import type { Model } from '../ir/graph.js';
import type { NumericData, Tensor } from '../ir/tensor.js';
import { encodeModel } from '../onnx/codec.js';
import { getRuntime, type OrtReturnType, type OrtSession, type OrtSessionOptions, type OrtTensor } from './runtime.js';

export interface SessionConfig {
  /** Intra-op threads (default: onnxruntime's choice). */
  threads?: number;
  /** Graph optimisation level (default 'all'). */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /** Where onnxruntime writes its optimised graph (to check which fusions happened). */
  optimizedModelPath?: string;
  /**
   * Whether idle intra-op threads spin-wait (onnxruntime's default: true). Off saves CPU on a shared machine and
   * makes process CPU time a fair measure of work (training graphs have hundreds of small nodes).
   */
  spin?: boolean;
  /**
   * onnxruntime's profiler: per-node timings written to `<profile>_<timestamp>.json` (a path prefix) when
   * Runner.endProfiling() is called (benchmarks; costs time on every run).
   */
  profile?: string;
  /** onnxruntime's warnings not printed (errors still are): a probe whose warning is expected. */
  quiet?: boolean;
}

export interface Runner {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(feeds: Record<string, Tensor>, outputs?: string[]): Promise<Record<string, Tensor>>;
  /** Runs with onnxruntime tensors as they are (no conversion), for timing loops. */
  runRaw(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>>;
  /** Stops the profiler of a session opened with `profile` and writes its file (no-op otherwise). */
  endProfiling(): Promise<void>;
  release(): Promise<void>;
}

function options(cfg: SessionConfig): OrtSessionOptions {
  const o: OrtSessionOptions = { graphOptimizationLevel: cfg.optimization ?? 'all' };
  if (cfg.threads) {
    o.intraOpNumThreads = cfg.threads;
    o.interOpNumThreads = 1;
  }
  if (cfg.profile) {
    o.enableProfiling = true;
    o.profileFilePrefix = cfg.profile;
  }
  if (cfg.optimizedModelPath) o.optimizedModelFilePath = cfg.optimizedModelPath;
  if (cfg.quiet) o.logSeverityLevel = 3;
  if (cfg.spin === false) o.extra = { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } };
  return o;
}

/** Opens a model (IR, serialised bytes, or a file path, which lets onnxruntime resolve external data). */
export async function createSession(model: Model | Uint8Array | string, cfg: SessionConfig = {}): Promise<Runner> {
  const rt = getRuntime();
  if (typeof model === 'string' && !rt.opensPaths) throw new ShearsError(`${rt.name} cannot open a model by path ('${model}'): give its bytes`);
  const opts = rt.sessionOptions(options(cfg));
  let session: OrtSession;
  try {
    if (typeof model === 'string') session = await rt.ort.InferenceSession.create(model, opts);
    else session = await rt.ort.InferenceSession.create(model instanceof Uint8Array ? model : encodeModel(model), opts);
  } catch (e) {
    if (e instanceof ShearsError) throw e;
    throw new ShearsError(`onnxruntime cannot load the model: ${firstLine((e as Error).message)}`);
  }
  return {
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    async run(feeds, outputs) {
      const ortFeeds: Record<string, OrtTensor> = {};
      for (const [k, t] of Object.entries(feeds)) ortFeeds[k] = toOrt(t);
      let res: OrtReturnType;
      try {
        res = outputs ? await session.run(ortFeeds, outputs) : await session.run(ortFeeds);
      } catch (e) {
        throw new ShearsError(`onnxruntime failed to run the model: ${firstLine((e as Error).message)}`);
      }
      const out: Record<string, Tensor> = {};
      for (const [k, v] of Object.entries(res)) out[k] = fromOrt(v);
      return out;
    },
    async runRaw(feeds) {
      return session.run(feeds);
    },
    async endProfiling() {
      if (cfg.profile) await session.endProfiling();
    },
    release: () => session.release(),
  };
}

/** The version of the onnxruntime package in use. */
export function ortVersion(): string {
  return getRuntime().version();
}

/** The name of the onnxruntime package in use ('onnxruntime-node', 'onnxruntime-web'). */
export function ortName(): string {
  return getRuntime().name;
}

/**
 * The graph onnxruntime optimises a model into (CPU provider, at `level`), serialised as it writes it; only
 * onnxruntime-node can write it.
 */
export async function optimizedModelBytes(model: Model | Uint8Array, cfg: SessionConfig = {}): Promise<Uint8Array> {
  const rt = getRuntime();
  const bytes = model instanceof Uint8Array ? model : encodeModel(model);
  try {
    return await rt.optimizedModel(bytes, options(cfg));
  } catch (e) {
    if (e instanceof ShearsError) throw e;
    throw new ShearsError(`onnxruntime cannot load the model: ${firstLine((e as Error).message)}`);
  }
}

/** One run of a model in a session opened for it and released afterwards (also when the run fails). */
export async function runOnce(model: Model | Uint8Array | string, feeds: Record<string, Tensor>, cfg: SessionConfig = {}): Promise<Record<string, Tensor>> {
  const session = await createSession(model, cfg);
  try {
    return await session.run(feeds);
  } finally {
    await session.release();
  }
}

function firstLine(s: string): string {
  return s.split('\n')[0]!.trim();
}

export function toOrt(t: Tensor): OrtTensor {
  const type = ortTypeName(t.dtype);
  if (!type || Array.isArray(t.data)) throw new ShearsError(`${getRuntime().name} cannot take a ${dtypeName(t.dtype)} tensor`);
  const data = t.dtype === DataType.BOOL ? new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) : t.data;
  return new (getRuntime().ort.Tensor)(type as 'float32', data as Float32Array, t.dims);
}

const ORT_DTYPES: Record<string, number> = {
  float32: DataType.FLOAT, float64: DataType.DOUBLE, int8: DataType.INT8, uint8: DataType.UINT8,
  int16: DataType.INT16, uint16: DataType.UINT16, int32: DataType.INT32, uint32: DataType.UINT32,
  int64: DataType.INT64, uint64: DataType.UINT64, bool: DataType.BOOL, float16: DataType.FLOAT16,
};

export function fromOrt(v: OrtTensor): Tensor {
  const dtype = ORT_DTYPES[v.type];
  if (dtype === undefined) throw new ShearsError(`unsupported onnxruntime output type ${v.type}`);
  let data = v.data as NumericData;
  if (v.type === 'bool') data = new Uint8Array((data as Uint8Array).buffer, (data as Uint8Array).byteOffset, (data as Uint8Array).byteLength);
  return { dtype, dims: [...v.dims], data };
}

/** An onnxruntime tensor of the installed runtime (for callers that feed runRaw). */
export function ortTensor(type: 'float32' | 'float64', data: Float32Array | Float64Array, dims: readonly number[]): OrtTensor {
  return new (getRuntime().ort.Tensor)(type as 'float32', data as Float32Array, dims);
}

export type { OrtTensor };
