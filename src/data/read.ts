/**
 * Reading data files: regular files only (opening a FIFO or a device named like a data file would block or
 * never end), every failure a ShearsError naming the file.
 */
import { ShearsError } from '../errors.js';
import { errorCode, platform } from '../fs/platform.js';
import { MAX_ARRAY_BYTES } from './limits.js';
import { bytes } from '../units.js';

const cannotRead = (path: string, e: unknown) => new ShearsError(`cannot read '${path}': ${errorCode(e)}`);

/** The size of a regular file; anything else (missing, a directory, a FIFO, a device) is refused. */
function regularFileSize(path: string): number {
  let st;
  try {
    st = platform().stat(path);
  } catch (e) {
    throw cannotRead(path, e);
  }
  if (!st.isFile) throw new ShearsError(`cannot read '${path}': not a regular file`);
  return st.size;
}

/** Bytes [offset, offset + length) of a regular file (fewer when the file ends first). */
export function readRange(path: string, offset: number, length: number): Uint8Array {
  regularFileSize(path);
  return readAt(path, offset, length);
}

function readAt(path: string, offset: number, length: number): Uint8Array {
  try {
    return platform().read(path, offset, length);
  } catch (e) {
    throw cannotRead(path, e);
  }
}

/** The first `n` bytes of a regular file (all of it when shorter) and its size. */
export function readHead(path: string, n: number): { head: Uint8Array; size: number } {
  const size = regularFileSize(path);
  return { head: readAt(path, 0, Math.min(n, size)), size };
}

/** All of a regular file, which must be no larger than an array read into memory may be. */
export function readAll(path: string): Uint8Array {
  const size = regularFileSize(path);
  if (size > MAX_ARRAY_BYTES) throw new ShearsError(`'${path}' is ${bytes(size)}, more than the ${bytes(MAX_ARRAY_BYTES)} a data file read into memory may take`);
  return readAt(path, 0, size);
}

/** Whether `path` is a regular file (or a link to one); false for anything missing or unreadable. */
export function isRegularFile(path: string): boolean {
  const host = platform(); // outside the try: a missing platform is an error, not a missing file
  try {
    return host.stat(path).isFile;
  } catch {
    return false;
  }
}

/** The names in a folder, sorted. */
export function listNames(dir: string): string[] {
  try {
    return platform().list(dir).sort();
  } catch (e) {
    throw new ShearsError(`cannot read folder '${dir}': ${errorCode(e)}`);
  }
}

/** Whether `path` is a directory (or a link to one); false for anything missing or unreadable. */
export function isDirectory(path: string): boolean {
  const host = platform();
  try {
    return host.stat(path).isDirectory;
  } catch {
    return false;
  }
}

/** Whether `path` exists (links followed); false for anything that cannot be looked at. */
export function pathExists(path: string): boolean {
  const host = platform();
  try {
    host.stat(path);
    return true;
  } catch {
    return false;
  }
}
