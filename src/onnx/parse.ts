/**
 * A model from its bytes, checked: the isomorphic half of io.ts (no files). External data comes through the
 * decode hooks (io.ts gives readers of the files beside a model); without them a model that has any is refused.
 */
import { ShearsError } from '../errors.js';
import { checkGraph } from '../ir/edit.js';
import type { Model } from '../ir/graph.js';
import { decodeModel } from './codec.js';

export interface ParseBytesOptions {
  /** Run the structural invariant check (default true). */
  validate?: boolean;
  /** The file the bytes come from, for messages. */
  fileName?: string;
}

/** How external data is read while decoding, and what to do once decoding succeeded or failed. */
export interface DecodeHooks {
  decode?: Parameters<typeof decodeModel>[1];
  decoded?(): void;
  failed?(): void;
}

export function parseModelBytes(bytes: Uint8Array, opts: ParseBytesOptions = {}, hooks: DecodeHooks = {}): Model {
  const what = opts.fileName ? `'${opts.fileName}'` : 'input';
  if (bytes.byteLength === 0) throw new ShearsError(`${what} is empty, not an ONNX model`);
  let model: Model;
  try {
    model = decodeModel(bytes, hooks.decode ?? {});
    hooks.decoded?.();
  } catch (e) {
    hooks.failed?.();
    if (e instanceof ShearsError) throw new ShearsError(`${what}: ${e.message}`, { cause: e });
    throw new ShearsError(`${what} is not a valid ONNX model: ${(e as Error).message}`);
  }
  if (model.irVersion <= 0 || model.irVersion > 100) throw new ShearsError(`${what} is not a valid ONNX model (ir_version ${model.irVersion})`);
  if (opts.validate !== false) {
    const problems = checkGraph(model.graph);
    if (problems.length) throw new ShearsError(`${what} is not a valid ONNX graph: ${problems[0]}${problems.length > 1 ? ` (and ${problems.length - 1} more problems)` : ''}`);
  }
  return model;
}
