/**
 * Reading tensors' external data (weights in side files beside the model). A location must name a regular file
 * inside the model's folder: absolute paths, '..' and symbolic links that lead out of the folder (real paths
 * are compared) are refused, and so are byte ranges outside the file. Each tensor's bytes are read on their
 * own, so side files over 2 GiB work and a model's memory is its tensors, not its files.
 *
 * `externalReader` reads each tensor's bytes while the model is decoded; `lazyExternal` checks everything the same
 * way at load time (locations, files, ranges, overlaps) but reads a tensor's bytes only when its data is used
 * (lazy tensors, ir/lazy.ts), from descriptors kept open until the tensors are garbage-collected: a file
 * replaced on disk meanwhile (saving over the input) does not change what they read.
 */
import { closeSync, openSync, readSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, join, normalize, sep } from 'node:path';
import { ShearsError } from '../errors.js';
import type { ExternalReader, LazyExternal } from './codec.js';

interface SideFile {
  fd: number;
  real: string;
  size: number;
  /** Bytes handed out so far (identical ranges counted once). */
  read: number;
  /** Ranges already read, by 'offset:length': tensors that share their data share the bytes, as in the file. */
  ranges: Map<string, Uint8Array | null>;
}

const errCode = (e: unknown) => (e as NodeJS.ErrnoException).code ?? (e as Error).message;

function sideFiles(baseDir: string) {
  const files = new Map<string, SideFile>();
  let realBase: string | undefined;

  const open = (location: string, tensor: string): { file: string; side: SideFile } => {
    const fail = (why: string) => new ShearsError(`tensor '${tensor}': external data location '${location}' ${why}`);
    if (location.includes('\0')) throw fail('is not a valid file name');
    const rel = normalize(location);
    if (isAbsolute(location) || isAbsolute(rel) || rel.split(sep).includes('..')) throw fail("points outside the model's directory");
    const file = join(baseDir, rel);
    const known = files.get(file);
    if (known) return { file, side: known };
    let real: string;
    try {
      realBase ??= realpathSync(baseDir);
      real = realpathSync(file);
    } catch (e) {
      if (errCode(e) === 'ENOENT') throw new ShearsError(`tensor '${tensor}': external data file '${file}' not found`);
      throw new ShearsError(`tensor '${tensor}': cannot read external data file '${file}': ${errCode(e)}`);
    }
    if (real === realBase) throw fail('is not a regular file');
    if (!real.startsWith(realBase.endsWith(sep) ? realBase : realBase + sep)) {
      throw fail(`leads outside the model's directory through a symbolic link (to '${real}')`);
    }
    let side: SideFile;
    try {
      const st = statSync(real);
      if (!st.isFile()) throw fail('is not a regular file');
      side = { fd: openSync(real, 'r'), real, size: st.size, read: 0, ranges: new Map() };
    } catch (e) {
      if (e instanceof ShearsError) throw e;
      throw new ShearsError(`tensor '${tensor}': cannot read external data file '${file}': ${errCode(e)}`);
    }
    files.set(file, side);
    return { file, side };
  };

  /** The side file of a tensor's range, checked: inside the file, and not overlapping other ranges (unless identical). */
  const locate = (location: string, offset: number, length: number, tensor: string): { file: string; side: SideFile; known?: Uint8Array | null } => {
    const { file, side } = open(location, tensor);
    if (offset + length > side.size) {
      throw new ShearsError(`tensor '${tensor}': external data [${offset}, ${offset + length}) is outside '${file}' (${side.size} bytes)`);
    }
    const key = `${offset}:${length}`;
    if (side.ranges.has(key)) return { file, side, known: side.ranges.get(key)! };
    // Ranges that overlap without being identical could make a small file read as many times its size.
    if (side.read + length > side.size) {
      throw new ShearsError(`tensor '${tensor}': the tensors' external data in '${file}' overlap (${side.read + length} bytes read from a file of ${side.size})`);
    }
    side.read += length;
    side.ranges.set(key, null);
    return { file, side };
  };

  const close = () => {
    for (const side of files.values()) closeSync(side.fd);
    files.clear();
  };
  return { open, locate, close, files };
}

function readRange(file: string, fd: number, offset: number, length: number, tensor: string): Uint8Array {
  const out = new Uint8Array(length);
  for (let got = 0; got < length;) {
    let n: number;
    try {
      n = readSync(fd, out, got, Math.min(length - got, 1 << 30), offset + got);
    } catch (e) {
      throw new ShearsError(`tensor '${tensor}': cannot read external data file '${file}': ${errCode(e)}`);
    }
    if (n === 0) throw new ShearsError(`tensor '${tensor}': external data file '${file}' ended at ${offset + got} bytes while being read`);
    got += n;
  }
  return out;
}

/** A reader of external data relative to `baseDir` (bytes read at once); `close` releases the files it opened. */
export function externalReader(baseDir: string): { read: ExternalReader; close: () => void } {
  const sides = sideFiles(baseDir);
  const read: ExternalReader = (location, offset, length, tensor) => {
    const { file, side, known } = sides.locate(location, offset, length, tensor);
    if (known) return known;
    const out = readRange(file, side.fd, offset, length, tensor);
    side.ranges.set(`${offset}:${length}`, out);
    return out;
  };
  return { read, close: sides.close };
}

/** Closes a lazy model's side files once nothing can read them any more. */
const closer = new FinalizationRegistry<number[]>((fds) => {
  for (const fd of fds) {
    try {
      closeSync(fd);
    } catch {
      /* already closed */
    }
  }
});

/**
 * External data relative to `baseDir`, checked now and read when used: each range becomes a loader (what lazy
 * tensors call) and the file's real path (writers that stream a model compare it with their own files).
 * `done` is called after decoding: the files stay open for the loaders, and are closed when they are collected.
 */
export function lazyExternal(baseDir: string): { locate: LazyExternal; done: () => void; close: () => void } {
  const sides = sideFiles(baseDir);
  // what the loaders hold: the descriptors; when the last loader is collected, the registry closes them
  const holder = { fds: [] as number[] };
  const locate: LazyExternal = (location, offset, length, tensor) => {
    const { file, side } = sides.locate(location, offset, length, tensor);
    const fd = side.fd;
    const h = holder;
    // (each loader refers to the holder, so that the descriptors are closed only once every loader is gone)
    return { load: () => (h.fds ? readRange(file, fd, offset, length, tensor) : new Uint8Array(0)), file: side.real };
  };
  const done = () => {
    holder.fds = [...sides.files.values()].map((s) => s.fd);
    if (holder.fds.length) closer.register(holder, holder.fds);
  };
  return { locate, done, close: sides.close };
}
