/** Reading and writing .onnx files, with external data (weights in side files). */
import { openSync, readSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ShearsError } from '../errors.js';
import { AtomicFile, writeFileAtomic } from '../fs/files.js';
import type { Model } from '../ir/graph.js';
import { encodeModel, tensorByteLength } from './codec.js';
import { parseModelBytes } from './parse.js';
import { externalReader, lazyExternal } from './external.js';
import { lazyTensor } from '../ir/lazy.js';
import { fromRawBytes, numel, type NumericData, type Tensor } from '../ir/tensor.js';

/** Above this much weight data a single protobuf cannot hold the model: external data is used automatically. */
export const PROTOBUF_LIMIT = 2 ** 31 - 1;
const AUTO_EXTERNAL_AT = 1.8e9;

export interface LoadOptions {
  /** Run the structural invariant check (default true). */
  validate?: boolean;
  /**
   * External data is checked at load time and read when a tensor is first used (default true): lazy tensors
   * (ir/lazy.ts) that streamed passes release again. false reads every tensor while loading.
   */
  lazy?: boolean;
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
  const lazy = opts.baseDir !== undefined && opts.lazy !== false ? lazyExternal(opts.baseDir) : undefined;
  const external = opts.baseDir !== undefined && !lazy ? externalReader(opts.baseDir) : undefined;
  try {
    return parseModelBytes(bytes, opts, {
      decode: lazy ? { lazyExternal: lazy.locate } : external ? { readExternal: external.read } : {},
      decoded: () => lazy?.done(),
      failed: () => lazy?.close(),
    });
  } finally {
    external?.close();
  }
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

/** The bytes of a model's initializers (what its file holds, less the graph). */
export function initializerBytes(model: Model): number {
  let total = 0;
  for (const t of model.graph.initializers.values()) total += tensorByteLength(t);
  return total;
}

/**
 * Serialises the model; returns the bytes written to the model file. Both the model and its external data
 * are written atomically (temporary files beside them, renamed when complete; the data file first, so a model
 * file never points into a partial one). Never replaces a file this run read as an input.
 */
export function saveModel(model: Model, path: string, opts: SaveOptions = {}): { bytes: number; externalFile?: string } {
  const total = initializerBytes(model);
  let ext = opts.externalData;
  if (!ext && total > AUTO_EXTERNAL_AT) ext = true;
  if (!ext) {
    const bytes = encodeModel(model);
    writeFileAtomic(path, bytes);
    return { bytes: bytes.byteLength };
  }
  const location = typeof ext === 'string' ? ext : `${basename(path)}.data`;
  const out = new StreamedSave(path, location);
  try {
    return out.finish(model, opts.externalThreshold);
  } finally {
    out.abort();
  }
}

/** Bytes of padding that keep each tensor 4096-aligned in a side file (so readers can map it). */
const ALIGN = 4096;

/**
 * A model saved with external data while it is being processed: `put` writes a tensor's bytes to the (temporary)
 * data file at once and returns a lazy tensor that reads them back from there, so that a streamed pass keeps no
 * finished tensor in memory; `finish` writes the other tensors, one at a time, then the model file, and renames
 * both into place (data file first). Nothing is replaced until `finish`; `abort` removes the temporary files.
 */
export class StreamedSave {
  readonly dataPath: string;
  private data: AtomicFile;
  private readFd: number | undefined;
  private placed = new WeakMap<Tensor, number>();
  private done = false;

  constructor(readonly path: string, readonly location: string = `${basename(path)}.data`) {
    this.dataPath = join(dirname(path), location);
    this.data = new AtomicFile(this.dataPath);
  }

  private append(bytes: Uint8Array): number {
    const pad = (ALIGN - (this.data.size % ALIGN)) % ALIGN;
    if (pad) this.data.write(new Uint8Array(pad));
    const at = this.data.size;
    this.data.write(bytes);
    return at;
  }

  /**
   * Writes `t` to the data file now; the returned tensor (to put in the model instead) holds `t`'s data until
   * released, then reads it from there.
   */
  put(t: Tensor): Tensor {
    if (this.done) throw new Error('StreamedSave: put after finish');
    if (Array.isArray(t.data)) return t;
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    const at = this.append(bytes);
    this.readFd ??= openSync(this.data.temp, 'r');
    const fd = this.readFd;
    const { dtype, dims } = t;
    const n = numel(dims);
    const length = bytes.byteLength;
    const load = (): NumericData => {
      const b = new Uint8Array(length);
      for (let got = 0; got < length;) {
        const k = readSync(fd, b, got, Math.min(length - got, 1 << 30), at + got);
        if (k === 0) throw new ShearsError(`'${this.dataPath}': the data being written ended early`);
        got += k;
      }
      return fromRawBytes(dtype, b, n);
    };
    // held until released (a streamed pass releases it once the step that runs it has it), then read back
    const lazy = Object.assign(lazyTensor(dtype, [...dims], length, load, { file: this.data.temp, offset: at, length }, t.data), (t as { name?: string }).name ? { name: (t as { name?: string }).name } : {});
    this.placed.set(lazy, at);
    return lazy;
  }

  /** Writes the model (tensors not yet written first, one at a time) and renames both files into place. */
  finish(model: Model, externalThreshold = 1024): { bytes: number; externalFile: string } {
    const bytes = encodeModel(model, {
      external: {
        location: this.location,
        sizeThreshold: externalThreshold,
        write: (b) => this.append(b),
        placed: (t) => this.placed.get(t),
      },
    });
    if (bytes.byteLength > PROTOBUF_LIMIT) throw new ShearsError(`the model graph alone is over 2 GB (${bytes.byteLength} bytes)`);
    const file = new AtomicFile(this.path);
    try {
      file.write(bytes);
      this.data.commit();
      file.commit();
    } finally {
      file.abort();
    }
    this.done = true;
    return { bytes: bytes.byteLength, externalFile: this.dataPath };
  }

  /** Removes the temporary data file unless `finish` renamed it. */
  abort(): void {
    this.data.abort();
    // (the descriptor stays open while tensors put here may still be read; it closes with the process)
  }
}
