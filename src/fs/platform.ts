/**
 * What the core needs of its host besides onnxruntime: reading files and listing folders (data sets given by
 * path), path arithmetic, facts about the machine (CPU, cores, process CPU time) and the assets a report
 * inlines. The core asks `platform()` and never imports a Node module itself, so it runs unchanged in a
 * browser.
 *
 * In Node the adapter of node.ts is installed by default (default.ts, imported below). A browser bundle maps
 * default.js to default-browser.js (the "browser" field of package.json, honoured by Vite, esbuild, webpack
 * and Rollup's node-resolve), so nothing of Node is bundled, and the page installs its own Platform with
 * `setPlatform()`: files from File/Blob objects (read with FileReaderSync in a Web Worker, or read into memory
 * up front), `navigator.hardwareConcurrency` for the cores, chart.js from the bundle.
 */
import { ShearsError } from '../errors.js';
import { defaultPlatform } from './default.js';

export type { FileStat, MachineInfo, Platform, WorkerThread } from './platform-types.js';
import type { Platform } from './platform-types.js';

let installed: Platform | undefined = defaultPlatform;

/** Installs the platform the core uses from now on (a browser's, or a test's). Returns the previous one. */
export function setPlatform(p: Platform | undefined): Platform | undefined {
  const prev = installed;
  installed = p;
  return prev;
}

/** The installed platform; a ShearsError when there is none (a browser page that did not call setPlatform). */
export function platform(): Platform {
  if (!installed) throw new ShearsError('no platform installed: call setPlatform() with file access for this host before reading data by path');
  return installed;
}

/** The threads work may use by default (the installed platform's answer). */
export function availableParallelism(): number {
  return platform().availableParallelism();
}

/** The code of an error a platform threw (ENOENT, ...), else its message. */
export function errorCode(e: unknown): string {
  return (e as { code?: string }).code ?? (e as Error).message;
}
