/**
 * The files each command reads and writes, checked before the command does any work: outputs must be writable
 * paths with a fitting extension in an existing folder, and no output may be (by inode, through links) a file
 * the command reads. Runs as commander's preAction hook, so every command is covered by one table.
 */
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { ShearsError } from '../errors.js';
import { checkOutputs, protectInput, type OutputSpec } from '../fs/files.js';

interface OutputOption {
  /** commander's option key. */
  key: string;
  flag: string;
  extensions: readonly string[];
  required?: boolean;
  /** An input option this output may name as well (a checkpoint resumed from and written again). */
  mayBe?: string;
}

const MODEL = ['.onnx'] as const;
const RECIPE = ['.json', '.yaml', '.yml'] as const;
const HTML = ['.html', '.htm'] as const;
const REPORT_HTML = { key: 'reportHtml', flag: '--report-html', extensions: HTML };

/** What each command writes. */
const OUTPUTS: Record<string, readonly OutputOption[]> = {
  prune: [
    { key: 'output', flag: '-o/--output', extensions: MODEL, required: true },
    { key: 'savePlan', flag: '--save-plan', extensions: ['.json'] },
    { key: 'saveRecipe', flag: '--save-recipe', extensions: RECIPE },
    REPORT_HTML,
  ],
  run: [{ key: 'output', flag: '-o/--output', extensions: MODEL, required: true }, REPORT_HTML],
  repair: [{ key: 'output', flag: '-o/--output', extensions: MODEL, required: true }],
  quantize: [{ key: 'output', flag: '-o/--output', extensions: MODEL, required: true }],
  finetune: [
    { key: 'output', flag: '-o/--output', extensions: MODEL, required: true },
    { key: 'checkpoint', flag: '--checkpoint', extensions: MODEL, mayBe: 'resume' },
  ],
  rebatch: [{ key: 'output', flag: '-o/--output', extensions: MODEL, required: true }],
  'nm-gemm': [{ key: 'output', flag: '-o/--output', extensions: MODEL, required: true }],
  report: [{ key: 'html', flag: '--html', extensions: HTML }],
  // (its files in --out are checked by the command, once their names are known; the model is protected here)
  sweep: [],
};

/** Options that name files a command reads (besides its positional arguments). */
const INPUT_KEYS = ['dense', 'teacher', 'bnReference', 'reference', 'plan', 'resume'] as const;

function strings(v: unknown): string[] {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string');
  return [];
}

/** Checks the outputs of `cmd` against its inputs (see the module comment); throws a ShearsError. */
export function checkCommandFiles(cmd: Command): void {
  const outputs = OUTPUTS[cmd.name()];
  if (!outputs) return;
  const o = cmd.opts() as Record<string, unknown>;
  const positional = (cmd.processedArgs as unknown[]).flatMap(strings);
  const named = Object.fromEntries(INPUT_KEYS.map((k) => [k, strings(o[k])[0]]));
  const specs: OutputSpec[] = [];
  for (const out of outputs) {
    const path = o[out.key];
    if (typeof path !== 'string') {
      if (out.required) throw new ShearsError(`missing ${out.flag}: where to write the result`);
      continue;
    }
    const mayReplace = out.mayBe !== undefined ? named[out.mayBe] : undefined;
    specs.push({ flag: out.flag, path, extensions: out.extensions, ...(mayReplace !== undefined ? { mayReplace } : {}) });
  }
  const inputs = [...positional, ...INPUT_KEYS.map((k) => named[k])];
  checkOutputs(specs, inputs);
  // Whatever later writes this run makes, none replaces an input. A checkpoint, given or the default one written
  // on Ctrl-C, may replace the one resumed from.
  const replaceable = new Set(outputs.map((x) => (x.mayBe !== undefined ? named[x.mayBe] : undefined)));
  for (const p of inputs) if (p !== undefined && !replaceable.has(p)) protectInput(p);
  for (const s of specs) {
    if (existsSync(s.path) && s.path !== s.mayReplace) process.stderr.write(`shears: replacing '${s.path}' when the run completes\n`);
  }
}
