/** Reading and writing .onnx files, with external data (weights in side files). */
import { readFileSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ShearsError } from '../errors.js';
import { AtomicFile, writeFileAtomic } from '../fs/files.js';
import { checkGraph } from '../ir/edit.js';
import type { Model } from '../ir/graph.js';
import { decodeModel, encodeModel, tensorByteLength } from './codec.js';
import { externalReader } from './external.js';

/** Above this much weight data a single protobuf cannot hold the model: external data is used automatically. */
export const PROTOBUF_LIMIT = 2 ** 31 - 1;
const AUTO_EXTERNAL_AT = 1.8e9;

export interface LoadOptions {
  /** Run the structural invariant check (default true). */
  validate?: boolean;
}

export function loadModel(path: string, opts: LoadOptions = {}): Model {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new ShearsError(`cannot read '${path}': no such file`);
  }
  if (!st.isFile()) throw new ShearsError(`cannot read '${path}': not a file`);
  if (st.size > PROTOBUF_LIMIT) {
    throw new ShearsError(`'${path}' is ${st.size} bytes, more than a protobuf (an ONNX model file) can hold (2 GiB); larger weights belong in external data`);
  }
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new ShearsError(`cannot read '${path}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parseModel(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), { ...opts, baseDir: dirname(path), fileName: path });
}

export interface ParseOptions extends LoadOptions {
  /** Directory that external-data locations are relative to; without it external data is an error. */
  baseDir?: string;
  fileName?: string;
}

export function parseModel(bytes: Uint8Array, opts: ParseOptions = {}): Model {
  const what = opts.fileName ? `'${opts.fileName}'` : 'input';
  if (bytes.byteLength === 0) throw new ShearsError(`${what} is empty, not an ONNX model`);
  let model: Model;
  const external = opts.baseDir !== undefined ? externalReader(opts.baseDir) : undefined;
  try {
    model = decodeModel(bytes, external ? { readExternal: external.read } : {});
  } catch (e) {
    if (e instanceof ShearsError) throw new ShearsError(`${what}: ${e.message}`, { cause: e });
    throw new ShearsError(`${what} is not a valid ONNX model: ${(e as Error).message}`);
  } finally {
    external?.close();
  }
  if (model.irVersion <= 0 || model.irVersion > 100) throw new ShearsError(`${what} is not a valid ONNX model (ir_version ${model.irVersion})`);
  if (opts.validate !== false) {
    const problems = checkGraph(model.graph);
    if (problems.length) throw new ShearsError(`${what} is not a valid ONNX graph: ${problems[0]}${problems.length > 1 ? ` (and ${problems.length - 1} more problems)` : ''}`);
  }
  return model;
}

export interface SaveOptions {
  /**
   * Write weights to a side file next to the model: true for '<model file>.data', or a file name.
   * Applied automatically when the weights would not fit in one protobuf (2 GB).
   */
  externalData?: boolean | string;
  /** Tensors smaller than this stay inside the model file (default 1024 bytes). */
  externalThreshold?: number;
}

/**
 * Serialises the model; returns the bytes written to the model file. Both the model and its external data
 * are written atomically (temporary files beside them, renamed when complete; the data file first, so a model
 * file never points into a partial one). Never replaces a file this run read as an input.
 */
export function saveModel(model: Model, path: string, opts: SaveOptions = {}): { bytes: number; externalFile?: string } {
  let total = 0;
  for (const t of model.graph.initializers.values()) total += tensorByteLength(t);
  let ext = opts.externalData;
  if (!ext && total > AUTO_EXTERNAL_AT) ext = true;
  if (!ext) {
    const bytes = encodeModel(model);
    writeFileAtomic(path, bytes);
    return { bytes: bytes.byteLength };
  }
  const location = typeof ext === 'string' ? ext : `${basename(path)}.data`;
  const dataPath = join(dirname(path), location);
  const data = new AtomicFile(dataPath);
  try {
    const bytes = encodeModel(model, {
      external: {
        location,
        sizeThreshold: opts.externalThreshold ?? 1024,
        write: (b) => {
          // Keep each tensor 4096-aligned in the side file so readers can map it.
          const pad = (4096 - (data.size % 4096)) % 4096;
          if (pad) data.write(new Uint8Array(pad));
          const at = data.size;
          data.write(b);
          return at;
        },
      },
    });
    if (bytes.byteLength > PROTOBUF_LIMIT) throw new ShearsError(`the model graph alone is over 2 GB (${bytes.byteLength} bytes)`);
    const file = new AtomicFile(path);
    try {
      file.write(bytes);
      data.commit();
      file.commit();
    } finally {
      file.abort();
    }
    return { bytes: bytes.byteLength, externalFile: dataPath };
  } finally {
    data.abort();
  }
}
