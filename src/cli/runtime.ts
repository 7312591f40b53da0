/**
 * The onnxruntime the CLI runs models with: onnxruntime-node (the default), or onnxruntime-web's WebAssembly
 * backend when SHEARS_RUNTIME=web, to get the very bytes a browser page computes for the same recipe (the
 * two engines' kernels round differently in the last bits, and repair writes weights from their outputs).
 */
import { ShearsError } from '../errors.js';
import { setRuntime } from '../runtime/runtime.js';

export async function installRuntime(value: string | undefined = process.env['SHEARS_RUNTIME']): Promise<void> {
  if (value === undefined || value === '' || value === 'node') return;
  if (value !== 'web') throw new ShearsError(`SHEARS_RUNTIME must be 'node' or 'web', not '${value}'`);
  const [{ webRuntime }, ort] = await Promise.all([import('../runtime/web.js'), import('onnxruntime-web')]);
  // one wasm thread: onnxruntime-web's threads are Web Workers, which Node does not give it
  ort.env.wasm.numThreads = 1;
  setRuntime(webRuntime);
}
