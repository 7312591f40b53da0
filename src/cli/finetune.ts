/**
 * `shears finetune MODEL --train SPEC -o OUT [...]`: a pipeline of one finetune step (pipeline/finetune.ts), with
 * flags generated from its option table (pipeline/steps.ts) as its own command spells them. `--teacher` is the
 * run's reference model (distillation), `--gmp`/`--lottery`/`--iterative-macs` its iterative schedule.
 */
import type { Command } from 'commander';
import { preprocessFromFlags } from '../data/preprocess.js';
import { ShearsError } from '../errors.js';
import { loadModel } from '../onnx/io.js';
import { saveResult } from './room.js';
import { validateSchedule, type IterativeSchedule } from '../pipeline/iterative.js';
import { describeOptionError, OptionError } from '../pipeline/options.js';
import type { Recipe } from '../pipeline/recipe.js';
import { FINETUNE_OPTIONS, type FinetuneStep } from '../pipeline/steps.js';
import { checkNotNearChance } from './data.js';
import { tokenSpec } from './eval.js';
import { addFeedOptions, addFloat32Option, addPreprocessOptions, feedsOf, positiveInt, preprocessFlags, withFloat32 } from './common.js';
import { shellQuote } from './interrupt.js';
import { checkFlagSteps, readModel, runFromCli } from './pipeline.js';
import { GivenFlags, checkOwnUsed, optionsFromFlags, ownContext, ownFlagOfKey, registerOwnFlags } from './step-flags.js';

const FINETUNE = ownContext('finetune', FINETUNE_OPTIONS);
const name = ownFlagOfKey([FINETUNE]);

function fraction(flag: string, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < 0 || n > max) throw new ShearsError(`${flag} must be a number in [0, ${max}], not '${v}'`);
    return n;
  };
}

export function registerFinetune(program: Command): void {
  const cmd = program
    .command('finetune')
    .description('Fine-tune a (pruned) model inside onnxruntime: ONNX autodiff, SGD/AdamW, distillation, masks kept, iterative pruning')
    .argument('<model>', 'path to an .onnx file')
    .requiredOption('-o, --output <path>', 'where to write the fine-tuned .onnx');
  registerOwnFlags(cmd, FINETUNE);
  cmd
    .option('--teacher <onnx>', 'distil from this (unpruned) model: KL at temperature T against its outputs (default: no distillation here; `shears prune --finetune-epochs` distils from the dense model unless --no-kd)')
    .option('--bn-reference <onnx>', 'with --bn reinsert: the unpruned model whose conv-output statistics the new BNs restore (default: --teacher)')
    .option('--gmp <sparsity>', 'gradual magnitude pruning to this global sparsity while fine-tuning (cubic schedule)', fraction('--gmp', 0.999))
    .option('--lottery <sparsity>', 'lottery-ticket iterative magnitude pruning to this sparsity, rewinding weights', fraction('--lottery', 0.999))
    .option('--iterative-macs <fraction>', 'iterative structured pruning to this fraction of MACs', fraction('--iterative-macs', 1))
    .option('--prune-steps <n>', 'pruning steps/rounds of --gmp/--lottery/--iterative-macs (default 3)', positiveInt('--prune-steps'))
    .option('--rewind-epoch <n>', 'lottery ticket: rewind point in epochs (default 0)', fraction('--rewind-epoch', Infinity))
    .option('--context <T>', 'token data: window length, for a model whose sequence dimension is symbolic (added to tokens: specs of --train and --val)')
    .option('--json', 'print one JSON report on stdout');
  addFloat32Option(cmd);
  addFeedOptions(addPreprocessOptions(cmd), { carry: false }).action(async (modelPath: string, o: FinetuneFlags, command: Command) => {
    const step = stepFromFlags(command, o);
    const recipe: Recipe = withFloat32<Recipe>({ format: 'shears.recipe', version: 1, ...preprocessOf(command), ...feedsOf(command), steps: [step] }, command);
    const run = {
      ...readModel(modelPath), modelPath, recipe, output: o.output, name,
      ...(o.teacher !== undefined ? { reference: loadModel(o.teacher) } : {}),
      pass: {
        ...(o.bnReference !== undefined ? { bnReference: loadModel(o.bnReference) } : {}),
        // Before minutes of training: a model that should work but scores near chance means the inputs are wrong.
        beforeTraining: (m: Parameters<typeof checkNotNearChance>[0], data: Parameters<typeof checkNotNearChance>[1], what: string) =>
          checkNotNearChance(m, data, what, { mayBeUntrained: what === 'the model' }),
      },
      ...(step.checkpoint !== undefined ? { checkpoint: step.checkpoint } : {}),
      stopped: (_: unknown, ckpt: string) => ({
        what: `'${o.output}' was not written`,
        resume: step.iterative
          ? 'shears: iterative pruning keeps no checkpoint: run the command again to start over'
          : `shears: to resume, add --resume ${shellQuote(ckpt)} to the same command${resumeCommand(command, ckpt)}`,
      }),
    };
    const r = await runFromCli(run);
    saveResult(r.model, o.output);
    const f = r.report.finetune!;
    const report = step.iterative
      ? { mode: MODE_NAMES[step.iterative.kind], stages: f.stages, seconds: f.seconds, finalValAcc: f.valTop1 }
      : {
        history: f.history, seconds: f.seconds,
        ...(f.valTop1Before !== undefined ? { initialValAcc: f.valTop1Before } : {}), finalValAcc: f.valTop1,
        ...(f.valRelMseBefore !== undefined ? { initialValRelMse: f.valRelMseBefore, finalValRelMse: f.valRelMse } : {}),
        ...(f.detector ? { detector: f.detector } : {}),
      };
    const full = { model: modelPath, output: o.output, train: f.trainSamples, ...(f.valSamples !== undefined ? { val: f.valSamples } : {}), ...report, ...(f.lm ? { lm: f.lm } : {}) };
    if (o.json) process.stdout.write(`${JSON.stringify(full)}\n`);
    else {
      const lm = f.lm;
      const score = lm ? ` (${lm.steps} steps of ${lm.batch} x ${lm.context} tokens, ${lm.secondsPerStep.toFixed(2)} s/step${lm.valAfter ? `; val bits per ${lm.valAfter.unit} ${lm.valBefore!.bitsPerToken.toFixed(4)} -> ${lm.valAfter.bitsPerToken.toFixed(4)}` : ''})`
        : f.valTop1 !== undefined ? ` (val top-1 ${(f.valTop1 * 100).toFixed(2)}%)`
        : f.valRelMse !== undefined ? ` (val relMSE vs teacher ${f.valRelMseBefore!.toExponential(3)} -> ${f.valRelMse.toExponential(3)}${f.detector?.keptBefore ? ': worse, so the model given was written unchanged' : ''})` : '';
      process.stdout.write(`wrote ${o.output}${score} in ${f.seconds.toFixed(1)} s\n`);
    }
  });
}

interface FinetuneFlags {
  output: string;
  teacher?: string;
  bnReference?: string;
  gmp?: number;
  lottery?: number;
  iterativeMacs?: number;
  pruneSteps?: number;
  rewindEpoch?: number;
  json?: boolean;
  context?: string;
}

function preprocessOf(command: Command): Pick<Recipe, 'preprocess'> {
  const preprocess = preprocessFromFlags(preprocessFlags(command.opts()));
  return Object.keys(preprocess).length ? { preprocess } : {};
}

/** The finetune step the flags give (one epoch unless --epochs; distillation from --teacher). */
function stepFromFlags(command: Command, o: FinetuneFlags): FinetuneStep {
  const flags = new GivenFlags(command);
  const given: Record<string, unknown> = { kind: 'finetune', epochs: 1 };
  // Before the table's options: --momentum and --no-nesterov apply with sgd only, kd options with a teacher.
  if (o.teacher !== undefined) given['kd'] = true;
  optionsFromFlags(flags, FINETUNE, given);
  if (given['train'] === undefined) throw new ShearsError('missing --train SPEC (training data)');
  if (o.context !== undefined) {
    given['train'] = tokenSpec(String(given['train']), 'auto', o.context);
    if (given['val'] !== undefined) given['val'] = tokenSpec(String(given['val']), 'auto', o.context);
  }
  const schedule = scheduleFromFlags(o);
  if (schedule) given['iterative'] = schedule;
  checkOwnUsed(flags, [FINETUNE]);
  const step = given as unknown as FinetuneStep;
  checkFlagSteps([step], (key) => (key === 'finetune.iterative' ? '--gmp/--lottery/--iterative-macs' : name(key)));
  return step;
}

/** The report's name of each schedule (the flag that asks for it). */
const MODE_NAMES = { gmp: 'gmp', lottery: 'lottery', macs: 'iterativeMacs' } as const;

/** The iterative schedule --gmp, --lottery or --iterative-macs asks for (with --prune-steps, --rewind-epoch). */
function scheduleFromFlags(o: FinetuneFlags): IterativeSchedule | undefined {
  const given = (['gmp', 'lottery', 'iterativeMacs'] as const).filter((k) => o[k] !== undefined);
  if (given.length > 1) throw new ShearsError('give at most one of --gmp, --lottery, --iterative-macs');
  const common = o.pruneSteps !== undefined ? { steps: o.pruneSteps } : {};
  const flag = (key: string) => {
    const field = key.split('.').pop();
    return field === 'steps' ? '--prune-steps' : field === 'rewindEpoch' ? '--rewind-epoch' : `--${given[0]!.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
  };
  const v = given[0] === 'gmp' ? { kind: 'gmp', sparsity: o.gmp, ...common }
    : given[0] === 'lottery' ? { kind: 'lottery', sparsity: o.lottery, ...common, ...(o.rewindEpoch !== undefined ? { rewindEpoch: o.rewindEpoch } : {}) }
    : given[0] === 'iterativeMacs' ? { kind: 'macs', target: o.iterativeMacs, ...common } : undefined;
  if (!v) return undefined;
  try {
    return validateSchedule(v, given[0]!);
  } catch (e) {
    if (e instanceof OptionError) throw new ShearsError(describeOptionError(e, flag));
    throw e;
  }
}

/** The command line that ran `command`, with `--resume ckpt` in place of any --resume (empty when unknown). */
function resumeCommand(command: Command, ckpt: string): string {
  // commander keeps the arguments it parsed on the program.
  const argv = (command.parent as { rawArgs?: unknown } | null)?.rawArgs;
  if (!Array.isArray(argv) || argv[0] !== command.name()) return '';
  const kept: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = String(argv[i]);
    if (a === '--resume') i++;
    else if (!a.startsWith('--resume=')) kept.push(a);
  }
  return `:\n  shears ${[...kept, '--resume', ckpt].map(shellQuote).join(' ')}`;
}
