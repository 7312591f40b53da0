/** Command-line pieces shared by the commands: preprocessing flags, number parsers, progress lines. */
import type { Command } from 'commander';
import type { PreprocessFlags } from '../data/preprocess.js';
import { ShearsError } from '../errors.js';
import { feedsFromArgs, feedsToRecipe } from '../data/feeds.js';
import type { EvalProgress } from '../metrics/evaluate.js';

/** Adds the preprocessing flags (shared by every command that reads data). */
export function addPreprocessOptions(cmd: Command): Command {
  return cmd
    .option('--scale [factor]', 'multiply pixels by FACTOR (e.g. 1/255); without a value: 1/255. Default: 1/255 on 8-bit images when every --mean/--std value is within [-1, 1] (torchvision units), else 1 (--scale 1 keeps raw values)')
    .option('--mean <list>', 'per-channel mean subtracted after scaling, comma list (e.g. 0.485,0.456,0.406)')
    .option('--std <list>', 'per-channel std divided by after the mean, comma list')
    .option('--resize <size>', 'bilinear resize: N (shorter side) or HxW')
    .option('--crop <size>', 'center crop: N or HxW')
    .option('--letterbox <size>', 'letterbox as Ultralytics: scale to fit N or HxW keeping the aspect ratio, pad with 114 (default for a detector [N,3,H,W] on image data: HxW)')
    .option('--layout <layout>', 'nchw or nhwc (default: from the model input)')
    .option('--color <color>', 'gray or rgb (default: from the model input channels)');
}

/** Adds --float32 (commands that run pipeline steps on a model: prune, repair, finetune, quantize, run). */
export function addFloat32Option(cmd: Command): Command {
  return cmd.option('--float32', 'a float16 model: upcast it to float32 for the work, cast the result back to float16, both checked in onnxruntime (float32: true in a recipe)');
}

/** The recipe with `float32: true` when --float32 was given. */
export function withFloat32<R extends { float32?: boolean }>(recipe: R, cmd: Command): R {
  return cmd.opts()['float32'] === true ? { ...recipe, float32: true } : recipe;
}

export function preprocessFlags(o: Record<string, unknown>): PreprocessFlags {
  const f: PreprocessFlags = {};
  for (const k of ['mean', 'std', 'resize', 'crop', 'layout', 'color', 'letterbox'] as const) if (typeof o[k] === 'string') f[k] = o[k] as string;
  if (o['scale'] !== undefined) f.scale = o['scale'] as string | boolean;
  return f;
}

export function positiveInt(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new ShearsError(`${flag} must be a positive integer, not '${v}'`);
    return n;
  };
}

/** A progress reporter on stderr (a rewritten line on a terminal, a line every few seconds otherwise). */
export function progressPrinter(label: string): (p: EvalProgress) => void {
  let last = 0;
  const tty = process.stderr.isTTY;
  return (p) => {
    const end = p.done >= p.total;
    if (tty) {
      process.stderr.write(`\r${label} ${p.done}/${p.total}${end ? '\n' : ''}`);
    } else if (end || p.seconds - last >= 5) {
      last = p.seconds;
      process.stderr.write(`${label} ${p.done}/${p.total} (${p.seconds.toFixed(1)} s)\n`);
    }
  };
}

/**
 * Adds --feed and --carry (multi-input and stateful models, data/feeds.ts): the data set feeds one input, these
 * feed the others.
 */
export function addFeedOptions(cmd: Command, { carry = true }: { carry?: boolean } = {}): Command {
  const collect = (v: string, prev: string[] | undefined) => [...(prev ?? []), v];
  cmd.option('--feed <NAME=SPEC>', 'feed model input NAME a constant: const:V or zeros, shaped from the input\'s declaration (@D1xD2 gives a shape), e.g. --feed sr=const:16000 --feed h=zeros; the data set feeds the one input left (repeatable)', collect);
  if (!carry) return cmd;
  return cmd
    .option('--carry <OUT=IN>', 'feed output OUT of one call back as input IN of the next (recurrent state, e.g. hn=h; IN\'s --feed is the first call\'s): samples then run one per call, in order (repeatable)', collect);
}

/** The recipe's feeds and carry from --feed/--carry (empty when not given). */
export function feedsOf(cmd: Command): { feeds?: Record<string, string>; carry?: Record<string, string> } {
  const o = cmd.opts() as { feed?: string[]; carry?: string[] };
  return feedsToRecipe(feedsFromArgs(o.feed, o.carry));
}
