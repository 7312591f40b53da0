/**
 * Which onnxruntime the core runs models with. Everything that executes a model goes through session.ts, which
 * asks `runtime()` for the package: onnxruntime-node (node.ts) or onnxruntime-web (web.ts), both exporting
 * onnxruntime-common's API. In Node the onnxruntime-node adapter is installed by default (default.ts); a
 * browser bundle maps default.js to default-browser.js (package.json "browser" field), which installs none, and
 * the page calls `setRuntime(webRuntime)` from 'runtime/web.js' once before using the core.
 */
import { ShearsError } from '../errors.js';
import { defaultRuntime } from './default.js';
import type { Runtime } from './types.js';

export type { OrtApi, OrtReturnType, OrtSession, OrtSessionOptions, OrtTensor, Runtime } from './types.js';

let installed: Runtime | undefined = defaultRuntime;

/** Installs the onnxruntime adapter the core uses from now on; returns the previous one. */
export function setRuntime(r: Runtime | undefined): Runtime | undefined {
  const prev = installed;
  installed = r;
  return prev;
}

/** The installed adapter; a ShearsError when there is none (a browser page that did not call setRuntime). */
export function getRuntime(): Runtime {
  if (!installed) throw new ShearsError("no onnxruntime installed: call setRuntime(webRuntime) (from 'runtime/web.js') before running a model");
  return installed;
}
