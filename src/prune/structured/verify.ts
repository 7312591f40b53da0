/**
 * The last gate before a structurally pruned model is handed on: it must load and run in onnxruntime, with the
 * original's output names and shapes and finite outputs, on the shapes it was analysed at. A failure is a
 * ShearsError naming what broke (onnxruntime's message names the node), never a file that does not load.
 */
import { ShearsError } from '../../errors.js';
import { DataType, dtypeName } from '../../ir/dtype.js';
import type { Model } from '../../ir/graph.js';
import { createTensor, numel, type Tensor } from '../../ir/tensor.js';
import { runOnce } from '../../runtime/session.js';

export interface VerifyOptions {
  /** Concrete shapes of the model's data inputs (those structured pruning analysed). */
  inputShapes: Record<string, number[]>;
  threads?: number;
}

export interface VerifyResult {
  /** Output name -> dims, identical for both models. */
  outputs: Record<string, number[]>;
}

/**
 * Deterministic probe inputs: float32 in [-1, 1); every other type zeros (a valid index for embeddings and
 * gathers; enough to prove a float16 or double graph loads and runs).
 */
function probeFeeds(model: Model, shapes: Record<string, number[]>): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  let seed = 12345;
  for (const i of model.graph.inputs) {
    if (model.graph.initializers.has(i.name)) continue;
    const dims = shapes[i.name];
    const elem = i.type?.elemType ?? DataType.FLOAT;
    if (!dims) throw new ShearsError(`cannot check the pruned model: no shape for input '${i.name}'`);
    const t = createTensor(elem, dims);
    if (elem === DataType.FLOAT) {
      const d = t.data as Float32Array;
      for (let k = 0; k < numel(dims); k++) {
        seed = (seed * 16807) % 2147483647;
        d[k] = (seed / 2147483647) * 2 - 1;
      }
    }
    feeds[i.name] = t;
  }
  return feeds;
}

async function runChecked(model: Model, feeds: Record<string, Tensor>, threads: number | undefined, what: string): Promise<Record<string, Tensor>> {
  try {
    return await runOnce(model, feeds, threads !== undefined ? { threads } : {});
  } catch (e) {
    throw new ShearsError(`${what} does not run in onnxruntime: ${(e as Error).message.split('\n')[0]}`);
  }
}

/**
 * Runs the original and the pruned model on the same probe inputs: the pruned one must load, run, give the same
 * output names and shapes, and finite float outputs where the original's are finite.
 */
export async function verifyPruned(original: Model, pruned: Model, opts: VerifyOptions): Promise<VerifyResult> {
  const feeds = probeFeeds(original, opts.inputShapes);
  const ref = await runChecked(original, feeds, opts.threads, 'the original model (at the analysed input shapes)');
  const got = await runChecked(pruned, feeds, opts.threads, 'the pruned model');
  const outputs: Record<string, number[]> = {};
  for (const o of original.graph.outputs) {
    const a = ref[o.name], b = got[o.name];
    if (!a) continue;
    if (!b) throw new ShearsError(`the pruned model lost output '${o.name}'`);
    if (a.dims.join('x') !== b.dims.join('x')) {
      throw new ShearsError(`the pruned model's output '${o.name}' is ${b.dims.join('x')}, the original's ${a.dims.join('x')}: pruning changed the model's interface`);
    }
    if (a.dtype !== b.dtype) throw new ShearsError(`the pruned model's output '${o.name}' is ${dtypeName(b.dtype)}, the original's ${dtypeName(a.dtype)}`);
    if (a.data instanceof Float32Array && b.data instanceof Float32Array) {
      let refFinite = true, gotFinite = true;
      for (let k = 0; k < a.data.length; k++) {
        if (!Number.isFinite(a.data[k]!)) refFinite = false;
        if (!Number.isFinite(b.data[k]!)) gotFinite = false;
      }
      if (refFinite && !gotFinite) throw new ShearsError(`the pruned model's output '${o.name}' has NaN or infinite values where the original's are finite`);
    }
    outputs[o.name] = b.dims;
  }
  return { outputs };
}
