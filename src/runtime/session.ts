/**
 * The only module that talks to onnxruntime. Everything that executes a model (evaluation, calibration,
 * repair, training steps, benchmarks, cross-checks) goes through here.
 */
import * as ort from 'onnxruntime-node';
import { ShearsError } from '../errors.js';
import { DataType, dtypeName, ortTypeName } from '../ir/dtype.js';
import type { Model } from '../ir/graph.js';
import type { NumericData, Tensor } from '../ir/tensor.js';
import { encodeModel } from '../onnx/codec.js';

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
}

export interface Runner {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(feeds: Record<string, Tensor>, outputs?: string[]): Promise<Record<string, Tensor>>;
  /** Runs with onnxruntime tensors as they are (no conversion), for timing loops. */
  runRaw(feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>>;
  /** Stops the profiler of a session opened with `profile` and writes its file (no-op otherwise). */
  endProfiling(): Promise<void>;
  release(): Promise<void>;
}

function options(cfg: SessionConfig): ort.InferenceSession.SessionOptions {
  const o: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: cfg.optimization ?? 'all' };
  if (cfg.threads) {
    o.intraOpNumThreads = cfg.threads;
    o.interOpNumThreads = 1;
  }
  if (cfg.profile) {
    o.enableProfiling = true;
    o.profileFilePrefix = cfg.profile;
  }
  if (cfg.optimizedModelPath) o.optimizedModelFilePath = cfg.optimizedModelPath;
  if (cfg.spin === false) o.extra = { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } };
  return o;
}

/** Opens a model (IR, serialised bytes, or a file path, which lets onnxruntime resolve external data). */
export async function createSession(model: Model | Uint8Array | string, cfg: SessionConfig = {}): Promise<Runner> {
  let session: ort.InferenceSession;
  try {
    if (typeof model === 'string') session = await ort.InferenceSession.create(model, options(cfg));
    else session = await ort.InferenceSession.create(model instanceof Uint8Array ? model : encodeModel(model), options(cfg));
  } catch (e) {
    throw new ShearsError(`onnxruntime cannot load the model: ${firstLine((e as Error).message)}`);
  }
  return {
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    async run(feeds, outputs) {
      const ortFeeds: Record<string, ort.Tensor> = {};
      for (const [k, t] of Object.entries(feeds)) ortFeeds[k] = toOrt(t);
      let res: ort.InferenceSession.ReturnType;
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

/** The onnxruntime-node package version in use. */
export function ortVersion(): string {
  return ort.env.versions.node ?? ort.env.versions.common;
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

export function toOrt(t: Tensor): ort.Tensor {
  const type = ortTypeName(t.dtype);
  if (!type || Array.isArray(t.data)) throw new ShearsError(`onnxruntime-node cannot take a ${dtypeName(t.dtype)} tensor`);
  const data = t.dtype === DataType.BOOL ? new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) : t.data;
  return new ort.Tensor(type as 'float32', data as Float32Array, t.dims);
}

const ORT_DTYPES: Record<string, number> = {
  float32: DataType.FLOAT, float64: DataType.DOUBLE, int8: DataType.INT8, uint8: DataType.UINT8,
  int16: DataType.INT16, uint16: DataType.UINT16, int32: DataType.INT32, uint32: DataType.UINT32,
  int64: DataType.INT64, uint64: DataType.UINT64, bool: DataType.BOOL, float16: DataType.FLOAT16,
};

export function fromOrt(v: ort.Tensor): Tensor {
  const dtype = ORT_DTYPES[v.type];
  if (dtype === undefined) throw new ShearsError(`unsupported onnxruntime output type ${v.type}`);
  let data = v.data as NumericData;
  if (v.type === 'bool') data = new Uint8Array((data as Uint8Array).buffer, (data as Uint8Array).byteOffset, (data as Uint8Array).byteLength);
  return { dtype, dims: [...v.dims], data };
}

export { ort };
