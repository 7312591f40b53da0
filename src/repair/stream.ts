/**
 * Layer-wise pruning of a model larger than memory (Wanda, SparseGPT): the repair path (repair.ts, stepper.ts)
 * with each layer's target its own dense weights on the inputs it gets from the already pruned layers before it
 * (no dense model runs beside), the calibration activations carried from step to step (the stepper's frontier
 * cache), each step's onnxruntime session holding only the weights of the nodes it runs, and every pruned weight
 * handed to `output` (a writer that puts it on disk: onnx/io.ts StreamedSave) and released. With a model loaded
 * lazily (external data, ir/lazy.ts) peak memory is about one step's weights plus the calibration activations.
 * Without `output` the same code runs in memory: streamed and in-memory results are the same, bit for bit.
 */
import type { Dataset } from '../data/dataset.js';
import type { Model } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import type { NMPattern } from '../sparsity/nm.js';
import { repair, type RepairReport } from './repair.js';

export interface LayerwiseOptions {
  method: 'wanda' | 'obs';
  /** Fraction of every layer's weights to prune (unstructured), or `pattern`. */
  sparsity?: number;
  pattern?: NMPattern;
  /** obs: damping, a fraction of the mean Hessian diagonal (default 0.01). */
  damp?: number;
  /** Prune the output layers (an LM head) too (default: left dense, as Wanda and SparseGPT do). */
  outputLayers?: boolean;
  /** Calibration batch size (default 128 samples). */
  batchSize?: number;
  threads?: number;
  /** Where pruned weights go as they are computed (streaming); without it the model is pruned in memory. */
  output?: { put(t: Tensor): Tensor };
  onProgress?: (p: { done: number; total: number; node: string; seconds: number }) => void;
}

/** Prunes `model`'s linear layers (MatMul, Gemm, Conv weights) one after the other; `model` is not modified. */
export async function pruneLayerwise(model: Model, calib: Dataset, opts: LayerwiseOptions): Promise<{ model: Model; report: RepairReport }> {
  return repair(model, model, calib, {
    method: opts.method,
    target: 'dense-layer',
    skipOutputLayers: !opts.outputLayers,
    storeMasks: false,
    ...(opts.sparsity !== undefined ? { sparsity: opts.sparsity } : {}),
    ...(opts.pattern ? { pattern: opts.pattern } : {}),
    ...(opts.damp !== undefined ? { damp: opts.damp } : {}),
    ...(opts.batchSize !== undefined ? { batchSize: opts.batchSize } : {}),
    ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
    ...(opts.output ? { output: opts.output } : {}),
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
  });
}
