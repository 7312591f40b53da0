/**
 * One data-parallel training replica (see step-runner.ts): a worker thread with its own onnxruntime session.
 * On 'step' it runs its rows of the shared batch through replica-core.ts (reading the shared parameters, state
 * and, when distilling from a table, teacher probabilities) and writes loss, outputs, gradients and state back.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createSession } from '../runtime/session.js';
import { ReplicaCore, type CoreIO } from './replica-core.js';
import type { ReplicaInit, ReplicaMessage } from './step-runner.js';

const init = workerData as ReplicaInit;
const port = parentPort!;
const post = (m: ReplicaMessage) => port.postMessage(m);

async function main(): Promise<void> {
  const cfg = { threads: init.threads, spin: init.spin };
  const session = await createSession(init.model, cfg);
  const teacher = init.teacher?.model ? await createSession(init.teacher.model, cfg) : undefined;
  const core = new ReplicaCore(session, teacher, init, init.micro, init.runs);
  const rows = init.micro * init.runs;
  const per = init.sampleDims.reduce((a, b) => a * b, 1);
  const k = init.classes;
  const rowsOf = (buf: SharedArrayBuffer, width: number) => new Float32Array(buf, init.index * rows * width * 4, rows * width);
  const io: CoreIO = {
    values: new Float32Array(init.shared.values),
    x: rowsOf(init.shared.x, per),
    targets: rowsOf(init.shared.targets, k),
    output: rowsOf(init.shared.output, k),
    results: new Float32Array(init.results),
    ...(init.teacher && !teacher ? { probs: rowsOf(init.shared.probs, k) } : {}),
  };
  const loss = new Float64Array(init.shared.loss);
  port.on('message', (m: string) => {
    if (m === 'close') {
      void core.release().finally(() => process.exit(0));
      return;
    }
    core.step(io).then((l) => {
      loss[init.index] = l;
      post({ kind: 'done' });
    }, (e: Error) => post({ kind: 'error', message: e.message }));
  });
  post({ kind: 'ready' });
}

main().catch((e: Error) => post({ kind: 'error', message: e.message }));
