#!/usr/bin/env node
/** The `shears` command: argument parsing and wiring only; the work is done by the library. */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { ShearsError } from '../errors.js';
import { registerBench } from './bench.js';
import { checkCommandFiles } from './files.js';
import { registerEval } from './eval.js';
import { registerFinetune } from './finetune.js';
import { registerInspect } from './inspect.js';
import { registerPrune } from './prune.js';
import { registerQuantize } from './quantize.js';
import { registerRepair } from './repair.js';
import { registerReport } from './report.js';
import { registerRebatch } from './rebatch.js';
import { registerNmGemm } from './nm-gemm.js';
import { registerRun } from './run.js';
import { registerStudio } from './studio.js';
import { registerSweep } from './sweep.js';
import { installRuntime } from './runtime.js';

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('shears')
    .description('Prune ONNX models so they are smaller and faster, repair their accuracy, and prove it.')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    // Before any command does work: its outputs can be written and replace none of its inputs.
    .hook('preAction', (_program, command) => checkCommandFiles(command));
  registerInspect(program);
  registerEval(program);
  registerPrune(program);
  registerRepair(program);
  registerRun(program);
  registerQuantize(program);
  registerBench(program);
  registerFinetune(program);
  registerReport(program);
  registerRebatch(program);
  registerNmGemm(program);
  registerStudio(program);
  registerSweep(program);
  return program;
}

/** Runs the CLI; resolves to the process exit code. */
export async function runCli(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await installRuntime();
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    return reportError(e);
  }
}

export function reportError(e: unknown): number {
  if (e instanceof CommanderError) {
    // commander has printed its message already; --help and --version exit 0.
    return e.exitCode === 0 ? 0 : 2;
  }
  if (e instanceof ShearsError) {
    process.stderr.write(`shears: error: ${e.message}\n`);
    return 2;
  }
  const err = e as Error;
  if (err?.name === 'RangeError' && /Array buffer allocation failed|Invalid array length/.test(err.message)) {
    process.stderr.write(`shears: error: out of memory (${err.message}); the model or its input shape is too large\n`);
    return 2;
  }
  process.stderr.write(`shears: internal error: ${err?.message ?? String(e)}\n`);
  if (process.env['SHEARS_DEBUG']) process.stderr.write(`${err?.stack ?? ''}\n`);
  else process.stderr.write('(this is a bug in shears; set SHEARS_DEBUG=1 for a stack trace)\n');
  return 1;
}

/** True when this file is the program node runs (directly, or through npm's `shears` bin link). */
function invokedAsProgram(): boolean {
  const argv1 = process.argv[1];
  if (argv1 === undefined) return false;
  try {
    return realpathSync(argv1) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

const isMain = invokedAsProgram();
if (isMain) {
  runCli(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.exitCode = reportError(e);
    },
  );
}
