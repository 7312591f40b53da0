/**
 * Ctrl-C while training (`shears finetune`, and the finetune step of `shears prune`/`shears run`). The first SIGINT
 * (or SIGTERM) asks the trainer to stop at the next step boundary, where it writes its checkpoint; the command then
 * prints how to resume on stderr and exits with 130 (143 for SIGTERM). A signal while nothing trains (the other
 * steps of a pipeline), or a second signal, exits at once after removing unfinished temporary files. Signals are a
 * CLI concern: the library only sees an AbortSignal (FinetuneOptions.signal, RunOptions.signal).
 */
import { removePendingTemps } from '../fs/files.js';
import { TrainingStopped } from '../train/checkpoint.js';

const CODES = { SIGINT: 130, SIGTERM: 143 } as const;
type Sig = keyof typeof CODES;

/** The default checkpoint of a run writing `output`: `OUT.onnx` -> `OUT.ckpt.onnx` (beside it). */
export function defaultCheckpoint(output: string): string {
  return `${output.replace(/\.onnx$/i, '')}.ckpt.onnx`;
}

/** An argument as a POSIX shell reads it back (quoted when it holds anything but safe characters). */
export function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/**
 * Runs `train` with a stop signal tied to SIGINT/SIGTERM. When the trainer stops on it, prints what happened
 * (`what`: e.g. "'out.onnx' was not written") and `resume` (how to go on, given the checkpoint written), then exits.
 * `training` says whether a signal now reaches a trainer (a pipeline trains in one of its steps only); when it
 * does not, the signal aborts at once.
 */
export async function interruptible<T>(
  train: (signal: AbortSignal) => Promise<T>,
  report: (stopped: TrainingStopped) => { what: string; resume: string },
  training: () => boolean = () => true,
): Promise<T> {
  const ac = new AbortController();
  let received: Sig | undefined;
  const onSignal = (sig: Sig) => {
    if (received === undefined && training()) {
      received = sig;
      process.stderr.write(`\nshears: ${sig}: stopping at the next training step to write a checkpoint (send it again to abort at once)\n`);
      ac.abort();
      return;
    }
    removePendingTemps();
    process.stderr.write(`shears: ${sig}: aborted${received === undefined ? '' : '; no checkpoint written'}\n`);
    process.exit(CODES[sig]);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await train(ac.signal);
  } catch (e) {
    if (!(e instanceof TrainingStopped) || received === undefined) throw e;
    const { what, resume } = report(e);
    process.stderr.write(`shears: interrupted: ${e.message}; ${what}\n${resume}\n`);
    // The trainer has released its sessions and worker threads: nothing is left running.
    process.exit(CODES[received]);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
