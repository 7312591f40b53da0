/**
 * The teacher's targets, computed once before training when every epoch shows it the same samples (no
 * augmentation): softmax(logits / T) for distillation, or its outputs as they are for match-teacher.
 */
import { ShearsError } from '../errors.js';
import { DataType } from '../ir/dtype.js';
import type { Model } from '../ir/graph.js';
import { numel } from '../ir/tensor.js';
import { createSession } from '../runtime/session.js';
import { softmaxRows } from './logits.js';
import type { SampleStore } from './store.js';

/**
 * Largest per-sample teacher table kept in memory (floats: 512 MB). A detector's distillation target is 38,850
 * floats per image on fmnist_det: 1,800 training canvases need 280 MB (at 256 MB the teacher ran in every step,
 * about a third of the step's work).
 */
export const TEACHER_TABLE_MAX = 128 * 2 ** 20;

/** softmax(teacher(x) / T) (or, without T, the outputs as they are) of every training sample, [n, classes]. */
export async function teacherTableFor(teacher: Model, input: string, data: SampleStore, classes: number, T: number | undefined, cfg: { threads?: number; spin?: boolean }, batch: number): Promise<Float32Array> {
  const runner = await createSession(teacher, cfg);
  try {
    const out = new Float32Array(data.n * classes);
    for await (const { start: s, data: chunk } of data.chunks(batch)) {
      const n = chunk.n;
      const y = (await runner.run({ [input]: { dtype: DataType.FLOAT, dims: [n, ...data.sampleDims], data: chunk.x } }))[runner.outputNames[0]!]!;
      const width = numel(y.dims.slice(1));
      if (width !== classes) throw new ShearsError(`the teacher has ${width} outputs per sample, the model ${classes}`);
      if (T === undefined) out.set(y.data as Float32Array, s * classes);
      else softmaxRows(y.data as Float32Array, n, classes, T, out.subarray(s * classes, (s + n) * classes));
    }
    return out;
  } finally {
    await runner.release();
  }
}

