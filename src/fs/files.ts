/**
 * Node file-system adapter: how shears writes files without ever losing the user's.
 *
 * - Every file is written to a temporary file in the destination's folder, fsynced, then renamed over the
 *   destination: a crash, a full disk or Ctrl-C leaves either the old file or the complete new one.
 * - Temporary files left by a killed process are removed by the next write to the same destination.
 * - Files read as inputs are registered (device and inode); a write that would replace one is refused, whatever
 *   path (symlink, hard link, `./x` vs `x`) leads to it.
 */
import { accessSync, closeSync, constants, existsSync, fsyncSync, openSync, readdirSync, realpathSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ShearsError } from '../errors.js';

const TMP_MARK = '.shears-tmp-';

/** Temporary files of this process not yet renamed: removed on exit and on interrupt. */
const pending = new Set<string>();
let exitHooked = false;

/** The inputs of this run, keyed by `dev:ino`. */
const inputs = new Map<string, string>();

function fileKey(path: string): string | undefined {
  try {
    const st = statSync(path);
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

/** Records a file this run reads, so that no write of this run replaces it. Missing files are ignored. */
export function protectInput(path: string): void {
  const key = fileKey(path);
  if (key !== undefined && !inputs.has(key)) inputs.set(key, path);
}

/** The registered input that `path` is (by inode, through links), if any. */
export function inputAt(path: string): string | undefined {
  const key = fileKey(path);
  return key === undefined ? undefined : inputs.get(key);
}

/** Forgets every registered input (for tests and long-lived processes between runs). */
export function clearProtectedInputs(): void {
  inputs.clear();
}

/** Removes this process's unfinished temporary files (called on exit and by interrupt handlers). */
export function removePendingTemps(): void {
  for (const p of pending) {
    try {
      unlinkSync(p);
    } catch {
      /* already gone */
    }
  }
  pending.clear();
}

function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  process.on('exit', removePendingTemps);
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes temporaries of `dest` left by processes that no longer run (a SIGKILL, a power cut). */
function removeStaleTemps(dir: string, base: string): void {
  const prefix = `.${base}${TMP_MARK}`;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) {
    if (!n.startsWith(prefix)) continue;
    const pid = Number(n.slice(prefix.length).split('-')[0]);
    if (Number.isInteger(pid) && pid > 0 && alive(pid)) continue;
    try {
      unlinkSync(join(dir, n));
    } catch {
      /* raced with another cleaner */
    }
  }
}

/** The real path a write to `dest` lands on: through a symlink at `dest`, in the real folder. */
function realTarget(dest: string): string {
  try {
    if (existsSync(dest)) return realpathSync(dest);
    return join(realpathSync(dirname(resolve(dest))), basename(dest));
  } catch {
    throw new ShearsError(`cannot write '${dest}': the folder '${dirname(dest)}' does not exist`);
  }
}

function fsError(e: unknown, dest: string): ShearsError {
  if (e instanceof ShearsError) return e;
  const err = e as NodeJS.ErrnoException;
  const why: Record<string, string> = {
    ENOSPC: 'no space left on the device',
    EDQUOT: 'disk quota exceeded',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EROFS: 'read-only file system',
    ENOENT: 'the folder does not exist',
    EISDIR: 'it is a folder',
    ENOTDIR: 'a part of the path is not a folder',
    EFBIG: 'file too large for the file system',
    EIO: 'input/output error',
  };
  const reason = (err.code && why[err.code]) ?? err.message;
  return new ShearsError(`cannot write '${dest}': ${reason}; nothing was replaced`, { cause: e });
}

/** A file being written: bytes go to a temporary beside `dest`; `commit` makes it `dest` in one rename. */
export class AtomicFile {
  readonly dest: string;
  readonly temp: string;
  private fd: number | undefined;
  private offset = 0;
  private done = false;

  constructor(dest: string) {
    this.dest = dest;
    const target = realTarget(dest);
    const protectedAs = inputAt(target);
    if (protectedAs !== undefined) throw new ShearsError(`refusing to write '${dest}': it is the input '${protectedAs}' of this run`);
    const dir = dirname(target);
    const base = basename(target);
    removeStaleTemps(dir, base);
    this.temp = join(dir, `.${base}${TMP_MARK}${process.pid}-${randomBytes(4).toString('hex')}`);
    hookExit();
    try {
      this.fd = openSync(this.temp, 'wx', 0o644);
    } catch (e) {
      throw fsError(e, dest);
    }
    pending.add(this.temp);
  }

  /** Bytes written so far. */
  get size(): number {
    return this.offset;
  }

  write(data: Uint8Array | string): void {
    if (this.fd === undefined) throw new Error(`AtomicFile ${this.dest}: write after commit or abort`);
    const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
    try {
      let done = 0;
      while (done < bytes.byteLength) done += writeSync(this.fd, bytes, done, bytes.byteLength - done);
    } catch (e) {
      this.abort();
      throw fsError(e, this.dest);
    }
    this.offset += bytes.byteLength;
  }

  /** Flushes to disk and renames over the destination (refused when the destination became an input). */
  commit(): void {
    if (this.fd === undefined) throw new Error(`AtomicFile ${this.dest}: commit after commit or abort`);
    try {
      fsyncSync(this.fd);
      closeSync(this.fd);
      this.fd = undefined;
      const target = realTarget(this.dest);
      const protectedAs = inputAt(target);
      if (protectedAs !== undefined) throw new ShearsError(`refusing to write '${this.dest}': it is the input '${protectedAs}' of this run`);
      renameSync(this.temp, target);
      this.done = true;
      pending.delete(this.temp);
      syncFolder(dirname(target));
    } catch (e) {
      this.abort();
      throw fsError(e, this.dest);
    }
  }

  /** Drops the temporary file; the destination is untouched. */
  abort(): void {
    if (this.done) return;
    if (this.fd !== undefined) {
      try {
        closeSync(this.fd);
      } catch {
        /* closing a broken descriptor */
      }
      this.fd = undefined;
    }
    try {
      unlinkSync(this.temp);
    } catch {
      /* never created or already renamed */
    }
    pending.delete(this.temp);
  }
}

function syncFolder(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    /* some file systems cannot fsync a folder; the rename itself is still atomic */
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Writes a whole file atomically (temporary file in the same folder, fsync, rename). */
export function writeFileAtomic(dest: string, data: Uint8Array | string): void {
  const f = new AtomicFile(dest);
  f.write(data);
  f.commit();
}

/** What kind of file an output is, for the checks before any work. */
export interface OutputSpec {
  /** The option that names it, for messages (`-o`, `--save-plan`, `--html`). */
  flag: string;
  path: string;
  /** Accepted extensions, lower case with the dot (`.onnx`); empty accepts any. */
  extensions?: readonly string[];
  /** The one input this output may replace (a checkpoint resumed from and written again). */
  mayReplace?: string;
}

/**
 * Checks, before any work, that every output can be written and replaces no input: the folder exists and is
 * writable, the path is not a folder, the extension fits, and no output is (by inode, through links) one of
 * `inputPaths` (except its `mayReplace`) or a registered input (see protectInput). Outputs must also differ from
 * each other.
 */
export function checkOutputs(outputs: readonly OutputSpec[], inputPaths: readonly (string | undefined)[]): void {
  const seen = new Map<string, string>();
  for (const o of outputs) {
    const { flag, path } = o;
    if (path === '') throw new ShearsError(`${flag}: empty path`);
    const dir = dirname(resolve(path));
    let dirStat;
    try {
      dirStat = statSync(dir);
    } catch {
      throw new ShearsError(`${flag} '${path}': the folder '${dirname(path)}' does not exist`);
    }
    if (!dirStat.isDirectory()) throw new ShearsError(`${flag} '${path}': '${dirname(path)}' is not a folder`);
    try {
      accessSync(dir, constants.W_OK);
    } catch {
      throw new ShearsError(`${flag} '${path}': the folder '${dirname(path)}' is not writable`);
    }
    if (existsSync(path) && statSync(path).isDirectory()) throw new ShearsError(`${flag} '${path}' is a folder; give a file name`);
    if (o.extensions?.length && !o.extensions.includes(extname(path).toLowerCase())) {
      throw new ShearsError(`${flag} '${path}': expected a ${o.extensions.join(' or ')} file name`);
    }
    const asInput = inputAt(path) ?? inputPaths.find((p) => p !== undefined && p !== o.mayReplace && sameTarget(p, path));
    if (asInput !== undefined) throw new ShearsError(`${flag} '${path}' is the input '${asInput}': shears never writes over its input; choose another output path`);
    const target = realTarget(path);
    const other = seen.get(target);
    if (other !== undefined) throw new ShearsError(`${flag} '${path}' is also the output of ${other}`);
    seen.set(target, flag);
  }
}

/** Whether two paths lead to one file: the same inode (hard links, symlinks) or the same real path. */
function sameTarget(a: string, b: string): boolean {
  const ka = fileKey(a);
  if (ka !== undefined && ka === fileKey(b)) return true;
  try {
    return realTarget(a) === realTarget(b);
  } catch {
    return false;
  }
}
