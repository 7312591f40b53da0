/** The Runtime interface (runtime.ts says what it is for); apart so that the adapters import no setter. */
import type { Env, InferenceSession, Tensor, TensorConstructor } from 'onnxruntime-common';

export type OrtReturnType = InferenceSession.ReturnType;

/** The onnxruntime API both packages export (onnxruntime-common's): sessions, tensors, settings. */
export interface OrtApi {
  readonly InferenceSession: { create(model: string | Uint8Array, options?: InferenceSession.SessionOptions): Promise<InferenceSession> };
  readonly Tensor: TensorConstructor;
  readonly env: Env;
}

export type OrtTensor = Tensor;
export type OrtSession = InferenceSession;
export type OrtSessionOptions = InferenceSession.SessionOptions;

/** One onnxruntime package behind the interface the core runs models through. */
export interface Runtime {
  /** The package: 'onnxruntime-node', 'onnxruntime-web'. */
  readonly name: string;
  readonly ort: OrtApi;
  /** The package version. */
  version(): string;
  /** Whether sessions may open a model by file path (onnxruntime then reads external data beside it). */
  readonly opensPaths: boolean;
  /** The session options this package takes for the ones the core asks for (drops or refuses what it lacks). */
  sessionOptions(o: OrtSessionOptions): OrtSessionOptions;
  /** The graph onnxruntime optimises `model` into (its optimizedModelFilePath output), serialised. */
  optimizedModel(model: Uint8Array, o: OrtSessionOptions): Promise<Uint8Array>;
}
