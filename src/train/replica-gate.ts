/**
 * Keeps the end of the process from stopping a replica worker (step-runner.ts) inside onnxruntime.
 *
 * Node stops worker threads when the process exits (process.exit, a second Ctrl-C, the end of the event loop).
 * A worker stopped while inside an onnxruntime call aborts the whole process once the call returns: the binding
 * cannot hand its results (or its error) to a JavaScript environment that is shutting down, and throws a C++
 * exception nobody catches ("terminate called after throwing an instance of 'Napi::Error'", SIGABRT;
 * bench/replica-stress.ts reproduces it). So each worker marks its onnxruntime calls in shared memory, and the
 * main thread, on 'exit', forbids new calls and waits for the running ones to return before Node stops the
 * workers, which are then idle.
 */

/** Layout: [0] the process is exiting; [1 + i] replica i is inside onnxruntime. */
export function createGate(replicas: number): SharedArrayBuffer {
  return new SharedArrayBuffer(4 * (replicas + 1));
}

/** Wraps replica `index`'s onnxruntime calls: marked while they run; never started (never settling) once exiting. */
export function gateCalls(gate: SharedArrayBuffer, index: number): <T>(call: () => Promise<T>) => Promise<T> {
  const a = new Int32Array(gate);
  const slot = 1 + index;
  const leave = () => {
    Atomics.store(a, slot, 0);
    Atomics.notify(a, slot);
  };
  return async <T>(call: () => Promise<T>): Promise<T> => {
    // Mark first, then look: with the main thread's order (flag, then look) one of the two sees the other.
    Atomics.store(a, slot, 1);
    if (Atomics.load(a, 0) !== 0) {
      leave();
      return new Promise<T>(() => undefined);
    }
    try {
      return await call();
    } finally {
      leave();
    }
  };
}

/**
 * On process exit, stops new onnxruntime calls of the gate's replicas and waits (at most `timeoutMs`) for the
 * running ones. Returns the function that removes the hook.
 */
export function holdExitForCalls(gate: SharedArrayBuffer, timeoutMs = 60_000): () => void {
  const a = new Int32Array(gate);
  const onExit = () => {
    Atomics.store(a, 0, 1);
    const end = Date.now() + timeoutMs;
    for (let slot = 1; slot < a.length; slot++) {
      while (Atomics.load(a, slot) !== 0) {
        const left = end - Date.now();
        if (left <= 0 || Atomics.wait(a, slot, 1, left) === 'timed-out') return;
      }
    }
  };
  process.on('exit', onExit);
  return () => {
    process.off('exit', onExit);
  };
}
