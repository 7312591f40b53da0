/**
 * Layer-wise pruning of a model larger than memory (Wanda, SparseGPT): calibrated pruning (prune/calibrated.ts,
 * the code `shears prune --method wanda|sparsegpt` runs in memory) with each pruned weight handed to `output` (a
 * writer that puts it on disk: onnx/io.ts StreamedSave) and released, the calibration activations carried from
 * step to step (the stepper's frontier cache), and each step's onnxruntime session holding only the weights of
 * the nodes it runs. With a model loaded lazily (external data, ir/lazy.ts) peak memory is about one step's
 * weights plus the calibration activations. Without `output` the same code runs in memory: streamed and
 * in-memory results are the same, bit for bit.
 */
import type { Dataset } from '../data/dataset.js';
import { cloneModel } from '../ir/clone.js';
import type { Model } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import { pruneCalibrated, type CalibratedReport } from './calibrated.js';
import type { NMPattern } from '../sparsity/nm.js';

export interface LayerwiseOptions {
  /** 'obs' is SparseGPT (the name of the repair method). */
  method: 'wanda' | 'sparsegpt' | 'obs';
  /** Fraction of every layer's weights to prune (unstructured), or `pattern`. */
  sparsity?: number;
  pattern?: NMPattern;
  /** sparsegpt: damping, a fraction of the mean Hessian diagonal (default 0.01). */
  damp?: number;
  /** sparsegpt: columns per mask-selection block (default 128). */
  blockSize?: number;
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
export async function pruneLayerwise(model: Model, calib: Dataset, opts: LayerwiseOptions): Promise<{ model: Model; report: CalibratedReport }> {
  const out = cloneModel(model);
  const report = await pruneCalibrated(out, calib, {
    method: opts.method === 'obs' ? 'sparsegpt' : opts.method,
    skipOutputLayers: !opts.outputLayers,
    storeMasks: false,
    ...(opts.sparsity !== undefined ? { sparsity: opts.sparsity } : {}),
    ...(opts.pattern ? { pattern: opts.pattern } : {}),
    ...(opts.damp !== undefined ? { damp: opts.damp } : {}),
    ...(opts.blockSize !== undefined ? { blockSize: opts.blockSize } : {}),
    ...(opts.batchSize !== undefined ? { batchSize: opts.batchSize } : {}),
    ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
    ...(opts.output ? { output: opts.output } : {}),
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
  });
  return { model: out, report };
}
