/**
 * Room for a result: before minutes of fine-tuning, the device that will hold the output must have room for it;
 * and when the final write fails anyway (the disk filled meanwhile), the result is saved where there is room
 * (the system's temporary folder) and the error says where, instead of being lost with the process.
 */
import { mkdtempSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { ShearsError } from '../errors.js';
import type { Model } from '../ir/graph.js';
import { writeFileAtomic } from '../fs/files.js';
import { saveModel } from '../onnx/io.js';

/** Bytes free to this user on the device holding `path`'s folder, or undefined when it cannot be told. */
export function freeBytes(path: string): number | undefined {
  try {
    const st = statfsSync(dirname(resolve(path)));
    return Number(st.bavail) * Number(st.bsize);
  } catch {
    return undefined;
  }
}

const MB = (n: number) => `${(n / 1e6).toFixed(n < 1e7 ? 1 : 0)} MB`;

/**
 * Refuses (exit 2) when the device of `dest` has less room than `bytes` (plus 5% and 1 MB): the write goes to a
 * temporary file beside it first, so the whole file must fit. `free` is for tests.
 */
export function checkRoom(dest: string, bytes: number, what: string, free: (p: string) => number | undefined = freeBytes): void {
  const room = free(dest);
  const need = Math.ceil(bytes * 1.05) + (1 << 20);
  if (room !== undefined && room < need) {
    throw new ShearsError(`no room for ${what} at '${dest}': ${MB(room)} free on its device, about ${MB(need)} needed; free some space or choose another output (nothing was written)`);
  }
}

/** Why a write failed for lack of room (the ShearsError of fs/files.ts keeps the system error as its cause). */
function outOfRoom(e: unknown): boolean {
  const code = (e as { cause?: { code?: string } }).cause?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG';
}

const newRescueDir = (): string => mkdtempSync(join(tmpdir(), 'shears-rescue-'));

/**
 * `write()` (to where the user asked); when it fails for lack of room, `write(dir)` again into a fresh rescue
 * folder and a ShearsError naming what went there (`saved(dir)`); the folder is removed when that fails too and
 * the first error is thrown as it was. Other errors pass unchanged.
 */
function withRescue<T>(write: (dir?: string) => T, saved: (dir: string) => string, rescueDir: () => string): T {
  try {
    return write();
  } catch (e) {
    if (!outOfRoom(e)) throw e;
    let dir: string | undefined;
    try {
      dir = rescueDir();
      write(dir);
    } catch {
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
      throw e;
    }
    throw new ShearsError(`${(e as Error).message}. ${saved(dir)}`, { cause: e });
  }
}

/**
 * saveModel, and when the device is full the model saved under the system's temporary folder instead: the
 * error then names that file (still an error: the output asked for was not written). `save` is for tests.
 */
export function saveResult(model: Model, dest: string, save: typeof saveModel = saveModel, rescueDir: () => string = newRescueDir): ReturnType<typeof saveModel> {
  return withRescue((dir) => save(model, dir === undefined ? dest : join(dir, basename(dest))), (dir) => `The result was saved to '${join(dir, basename(dest))}' instead: move it where you want it`, rescueDir);
}

/**
 * Text results (a sweep's JSON and HTML report), written atomically; when the device is full, all of them are
 * written under the system's temporary folder instead and the error names that folder. `write` is for tests.
 */
export function saveTexts(files: readonly { path: string; text: string }[], write: (path: string, text: string) => void = writeFileAtomic, rescueDir: () => string = newRescueDir): void {
  withRescue((dir) => {
    for (const f of files) write(dir === undefined ? f.path : join(dir, basename(f.path)), f.text);
  }, (dir) => `${files.map((f) => basename(f.path)).join(' and ')} were saved to '${dir}' instead: move them where you want them`, rescueDir);
}
