/**
 * Training checkpoints (the trainer's only file access): an ONNX model holding the trained values, the optimizer
 * buffers as initializers `shears_opt/KEY/INDEX`, and in its metadata where the run stands: whole epochs done,
 * steps done in the next one, what fixes the data order (seed, batch, sample count), the random draws taken by
 * augmentation, the statistics of the epoch so far, the history and the starting model's scores. A run resumed
 * from it, at an epoch boundary or mid-epoch, ends equal to the uninterrupted run (to float rounding).
 * Written atomically (fs/files.ts): an interrupted write leaves the previous checkpoint.
 */
import { ShearsError } from '../errors.js';
import { DataType } from '../ir/dtype.js';
import type { Model } from '../ir/graph.js';
import { decodeModel, encodeModel } from '../onnx/codec.js';
import { platform } from '../fs/platform.js';
import { mixedSeedRng } from '../random.js';
import type { EpochStats } from './epoch-stats.js';

export const CKPT_KEY = 'shears.train.checkpoint';
const OPT_PREFIX = 'shears_opt/';

/** The statistics of an epoch stopped part-way. */
export interface EpochSoFar {
  lossSum: number;
  correct: number;
  seen: number;
  seconds: number;
  rssMiB: number[];
}

export interface CheckpointInfo {
  /** Whole epochs done. */
  epoch: number;
  /** Steps done in epoch `epoch` (0 at an epoch boundary; absent in checkpoints of older versions). */
  step?: number;
  bn: string;
  history: EpochStats[];
  /** What the data order of a mid-epoch stop depends on (absent in checkpoints of older versions). */
  seed?: number;
  batch?: number;
  samples?: number;
  /** Random numbers drawn by augmentation so far. */
  draws?: number;
  partial?: EpochSoFar;
  initialValAcc?: number;
  initialValRelMse?: number;
}

/** Reads a checkpoint: the model (optimizer buffers removed), the run's position, the optimizer state. */
export function loadCheckpoint(path: string): { model: Model; info: CheckpointInfo; optimizer: Record<string, Float32Array[]> } {
  const host = platform();
  const model = decodeModel(host.read(path, 0, host.stat(path).size));
  let info: CheckpointInfo | null = null;
  try {
    info = JSON.parse(model.metadata.get(CKPT_KEY) ?? 'null') as CheckpointInfo | null;
  } catch {
    /* not JSON: refused below */
  }
  if (!info || typeof info.epoch !== 'number') throw new ShearsError(`${path} is not a shears training checkpoint`);
  const optimizer: Record<string, Float32Array[]> = {};
  for (const [k, t] of [...model.graph.initializers]) {
    if (!k.startsWith(OPT_PREFIX)) continue;
    const [, key, idx] = k.split('/') as [string, string, string];
    (optimizer[key] ??= [])[Number(idx)] = t.data as Float32Array;
    model.graph.initializers.delete(k);
  }
  return { model, info, optimizer };
}

/** Writes `model` (the trained values) with the run's position and optimizer state as a checkpoint at `path`. */
export function saveCheckpoint(path: string, model: Model, info: CheckpointInfo, optimizer: Record<string, Float32Array[]>): void {
  model.metadata.set(CKPT_KEY, JSON.stringify(info));
  for (const [key, bufs] of Object.entries(optimizer)) {
    bufs.forEach((b, k) => model.graph.initializers.set(`${OPT_PREFIX}${key}/${k}`, { dtype: DataType.FLOAT, dims: [b.length], data: Float32Array.from(b) }));
  }
  const host = platform();
  if (!host.writeFile) throw new ShearsError(`cannot write the checkpoint '${path}': the ${host.name} platform writes no files`);
  host.writeFile(path, encodeModel(model));
}

/**
 * A checkpoint written mid-epoch continues that epoch's data order: refused when the run differs in what the
 * order depends on. (At an epoch boundary the batch, data and seed may change, as before.)
 */
export function checkMidEpoch(info: CheckpointInfo, run: { seed: number | undefined; batch: number; samples: number }): void {
  if (!info.step) return;
  const at = `the checkpoint stopped in epoch ${info.epoch + 1} after ${info.step} step(s)`;
  if (info.batch !== undefined && info.batch !== run.batch) throw new ShearsError(`${at} with a batch of ${info.batch}: resume with the same batch size (not ${run.batch})`);
  if (info.samples !== undefined && info.samples !== run.samples) throw new ShearsError(`${at} on ${info.samples} training samples: resume with the same training data and limit (not ${run.samples} samples)`);
  if (run.seed !== undefined && info.seed !== undefined && info.seed !== run.seed) throw new ShearsError(`${at} with seed ${info.seed}: resume with the same seed (not ${run.seed})`);
}

/** A seeded generator that counts its draws, so that a resumed run can skip as many. */
export function countingRng(seed: number, skip = 0): { next: () => number; readonly draws: number } {
  const r = mixedSeedRng(seed);
  for (let i = 0; i < skip; i++) r();
  let draws = skip;
  return {
    next: () => {
      draws++;
      return r();
    },
    get draws() {
      return draws;
    },
  };
}

export { TrainingStopped } from './stopped.js';
