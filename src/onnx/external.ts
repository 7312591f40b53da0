/**
 * Reading tensors' external data (weights in side files beside the model). A location must name a regular file
 * inside the model's folder: absolute paths, '..' and symbolic links that lead out of the folder (real paths
 * are compared) are refused, and so are byte ranges outside the file. Each tensor's bytes are read on their
 * own, so side files over 2 GiB work and a model's memory is its tensors, not its files.
 */
import { closeSync, openSync, readSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, join, normalize, sep } from 'node:path';
import { ShearsError } from '../errors.js';
import type { ExternalReader } from './codec.js';

interface SideFile {
  fd: number;
  size: number;
  /** Bytes handed out so far (identical ranges counted once). */
  read: number;
  /** Ranges already read, by 'offset:length': tensors that share their data share the bytes, as in the file. */
  ranges: Map<string, Uint8Array>;
}

const errCode = (e: unknown) => (e as NodeJS.ErrnoException).code ?? (e as Error).message;

/** A reader of external data relative to `baseDir`; `close` releases the files it opened. */
export function externalReader(baseDir: string): { read: ExternalReader; close: () => void } {
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
      side = { fd: openSync(real, 'r'), size: st.size, read: 0, ranges: new Map() };
    } catch (e) {
      if (e instanceof ShearsError) throw e;
      throw new ShearsError(`tensor '${tensor}': cannot read external data file '${file}': ${errCode(e)}`);
    }
    files.set(file, side);
    return { file, side };
  };

  const read: ExternalReader = (location, offset, length, tensor) => {
    const { file, side } = open(location, tensor);
    if (offset + length > side.size) {
      throw new ShearsError(`tensor '${tensor}': external data [${offset}, ${offset + length}) is outside '${file}' (${side.size} bytes)`);
    }
    const key = `${offset}:${length}`;
    const known = side.ranges.get(key);
    if (known) return known;
    // Ranges that overlap without being identical could make a small file read as many times its size.
    if (side.read + length > side.size) {
      throw new ShearsError(`tensor '${tensor}': the tensors' external data in '${file}' overlap (${side.read + length} bytes read from a file of ${side.size})`);
    }
    const out = new Uint8Array(length);
    for (let got = 0; got < length;) {
      let n: number;
      try {
        n = readSync(side.fd, out, got, Math.min(length - got, 1 << 30), offset + got);
      } catch (e) {
        throw new ShearsError(`tensor '${tensor}': cannot read external data file '${file}': ${errCode(e)}`);
      }
      if (n === 0) throw new ShearsError(`tensor '${tensor}': external data file '${file}' ended at ${offset + got} bytes while being read`);
      got += n;
    }
    side.read += length;
    side.ranges.set(key, out);
    return out;
  };

  const close = () => {
    for (const side of files.values()) closeSync(side.fd);
    files.clear();
  };
  return { read, close };
}
