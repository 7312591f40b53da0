/**
 * One data-parallel training replica (see step-runner.ts): a worker thread with its own onnxruntime session.
 * On 'step' it runs its rows of the shared batch through replica-core.ts (reading the shared parameters, state
 * and, when distilling from a table, teacher probabilities) and writes loss, outputs, gradients and state back.
 * On 'close' it lets a running step finish, releases its sessions and ends. Every onnxruntime call goes through
 * the exit gate (replica-gate.ts).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createSession } from '../runtime/session.js';
import { ReplicaCore, type CoreIO } from './replica-core.js';
import { gateCalls } from './replica-gate.js';
import type { ReplicaInit, ReplicaMessage } from './step-runner.js';

const init = workerData as ReplicaInit;
const port = parentPort!;
const post = (m: ReplicaMessage) => port.postMessage(m);
const guard = gateCalls(init.gate, init.index);

async function main(): Promise<void> {
  const cfg = { threads: init.threads, spin: init.spin };
  const session = await guard(() => createSession(init.model, cfg));
  const teacherModel = init.teacher?.model;
  let teacher;
  try {
    teacher = teacherModel ? await guard(() => createSession(teacherModel, cfg)) : undefined;
  } catch (e) {
    await guard(() => session.release());
    throw e;
  }
  const core = new ReplicaCore(session, teacher, init, init.micro, init.runs, guard);
  const rows = init.micro * init.runs;
  const per = init.sampleDims.reduce((a, b) => a * b, 1);
  const k = init.classes;
  const rowsOf = (buf: SharedArrayBuffer, width: number) => new Float32Array(buf, init.index * rows * width * 4, rows * width);
  const io: CoreIO = {
    values: new Float32Array(init.shared.values),
    x: rowsOf(init.shared.x, per),
    targets: rowsOf(init.shared.targets, k),
    output: rowsOf(init.shared.output, init.outputWidth ?? k),
    results: new Float32Array(init.results),
    ...(init.teacher && !teacher ? { probs: rowsOf(init.shared.probs, k) } : {}),
  };
  const loss = new Float64Array(init.shared.loss);
  // The step in progress (the main thread sends one at a time; 'close' waits for it).
  let running: Promise<void> = Promise.resolve();
  let closing = false;
  port.on('message', (m: string) => {
    if (closing) return;
    if (m === 'close') {
      closing = true;
      void running.then(() => core.release()).finally(() => process.exit(0));
      return;
    }
    running = core.step(io).then((l) => {
      loss[init.index] = l;
      post({ kind: 'done' });
    }, (e: Error) => post({ kind: 'error', message: e.message }));
  });
  post({ kind: 'ready' });
}

main().catch((e: Error) => post({ kind: 'error', message: e.message }));
