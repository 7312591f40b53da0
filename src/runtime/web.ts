/**
 * The onnxruntime-web adapter: the WebAssembly CPU backend ('wasm' execution provider; SIMD, and threads when
 * the page is cross-origin isolated). Threads are process-wide in onnxruntime-web (`ort.env.wasm.numThreads`,
 * set before the first session), so a session's `threads` is not passed on. It also runs in Node (tests check
 * its outputs against onnxruntime-node's there).
 */
import * as ort from 'onnxruntime-web';
import { ShearsError } from '../errors.js';
import type { OrtApi, Runtime } from './types.js';

export const webRuntime: Runtime = {
  name: 'onnxruntime-web',
  ort: ort as unknown as OrtApi,
  version: () => ort.env.versions.web ?? ort.env.versions.common,
  opensPaths: false,
  sessionOptions(o) {
    if (o.optimizedModelFilePath) throw new ShearsError('onnxruntime-web cannot write its optimised model (optimizedModelFilePath)');
    const { intraOpNumThreads: _intra, interOpNumThreads: _inter, ...rest } = o;
    return { ...rest, executionProviders: ['wasm'] };
  },
  async optimizedModel() {
    throw new ShearsError("onnxruntime-web cannot write its optimised model: the fusion check (optimizedModel) needs onnxruntime-node");
  },
};
