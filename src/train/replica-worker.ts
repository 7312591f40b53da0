/**
 * One data-parallel training replica (see step-runner.ts): a worker thread with its own onnxruntime session
 * for batch/R samples. On 'step' it copies the shared parameters, state and its slice of the batch (and of the
 * teacher's probabilities, or runs the teacher), runs the training graph, and writes loss, outputs, gradients
 * and state back.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { DataType } from '../ir/dtype.js';
import type { Tensor } from '../ir/tensor.js';
import { createSession } from '../runtime/session.js';
import { teacherProbs, type ReplicaInit, type ReplicaMessage } from './step-runner.js';

const init = workerData as ReplicaInit;
const port = parentPort!;
const post = (m: ReplicaMessage) => port.postMessage(m);
const size = (dims: number[]) => dims.reduce((a, b) => a * b, 1);

async function main(): Promise<void> {
  const cfg = { threads: init.threads, spin: init.spin };
  const session = await createSession(init.model, cfg);
  const teacher = init.teacher?.model ? await createSession(init.teacher.model, cfg) : undefined;
  const n = init.batch;
  const per = size(init.sampleDims);
  const f32 = (dims: number[], data: Float32Array): Tensor => ({ dtype: DataType.FLOAT, dims, data });
  // onnxruntime-node does not accept SharedArrayBuffer-backed arrays: local copies are fed.
  const lens = [...init.params.map((p) => size(p.dims)), ...init.state.map((s) => size(s.dims))];
  const sharedValues = new Float32Array(init.shared.values);
  const local = new Float32Array(sharedValues.length);
  const x = new Float32Array(n * per);
  const targets = new Float32Array(n * init.classes);
  const probs = new Float32Array(n * init.classes);
  const sharedX = new Float32Array(init.shared.x, init.index * n * per * 4, n * per);
  const sharedT = new Float32Array(init.shared.targets, init.index * n * init.classes * 4, n * init.classes);
  const sharedP = init.teacher && !teacher ? new Float32Array(init.shared.probs, init.index * n * init.classes * 4, n * init.classes) : undefined;
  const output = new Float32Array(init.shared.output, init.index * n * init.classes * 4, n * init.classes);
  const loss = new Float64Array(init.shared.loss);
  const results = new Float32Array(init.results);
  const feeds: Record<string, Tensor> = {};
  let o = 0;
  const names = [...init.params.map((p) => [p.name, p.dims] as const), ...init.state.map((s) => [s.input, s.dims] as const)];
  names.forEach(([name, dims], k) => {
    feeds[name] = f32(dims, local.subarray(o, o + lens[k]!));
    o += lens[k]!;
  });
  feeds[init.input] = f32([n, ...init.sampleDims], x);
  feeds[init.target] = f32([n, init.classes], targets);
  if (init.teacher) feeds[init.teacher.probs] = f32([n, init.classes], probs);
  const outNames = [...init.gradOutputs, ...init.state.map((s) => s.output)];

  const step = async () => {
    local.set(sharedValues);
    x.set(sharedX);
    targets.set(sharedT);
    if (teacher && init.teacher) await teacherProbs(teacher, { input: init.teacher.input ?? init.input, temperature: init.teacher.temperature }, feeds[init.input]!, n, init.classes, probs);
    else if (sharedP) probs.set(sharedP);
    const res = await session.run(feeds);
    loss[init.index] = Number(res[init.loss]!.data[0]);
    output.set(res[init.output]!.data as Float32Array);
    let off = 0;
    outNames.forEach((name, k) => {
      results.set(res[name]!.data as Float32Array, off);
      off += lens[k]!;
    });
  };

  port.on('message', (m: string) => {
    if (m === 'close') {
      void Promise.all([session.release(), teacher?.release()]).finally(() => process.exit(0));
      return;
    }
    step().then(() => post({ kind: 'done' }), (e: Error) => post({ kind: 'error', message: e.message }));
  });
  post({ kind: 'ready' });
}

main().catch((e: Error) => post({ kind: 'error', message: e.message }));
