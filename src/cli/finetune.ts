/** `shears finetune`: fine-tune (or train) a model inside onnxruntime; wiring only (see train/). */
import type { Command } from 'commander';
import { checkNotNearChance, openData } from './data.js';
import { preprocessFor, writePreprocess } from '../data/preprocess.js';
import { ShearsError } from '../errors.js';
import { loadModel, saveModel } from '../onnx/io.js';
import { SampleStore } from '../train/store.js';
import { firstSamples } from '../pipeline/finetune.js';
import { finetune, type FinetuneOptions } from '../train/trainer.js';
import { defaultCheckpoint, interruptible, shellQuote } from './interrupt.js';
import { formatStage, pruneIteratively, validateSchedule, type IterativeSchedule } from '../pipeline/iterative.js';
import { describeOptionError, OptionError } from '../pipeline/options.js';
import { parseSchedule } from '../train/schedule.js';
import type { OptimizerSpec } from '../train/optim.js';
import { addPreprocessOptions, positiveInt, preprocessFlags } from './eval.js';

function num(flag: string, min = -Infinity, max = Infinity) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max) throw new ShearsError(`${flag} must be a number in [${min}, ${max}], not '${v}'`);
    return n;
  };
}

function parseAugment(s: string): NonNullable<FinetuneOptions['augment']> {
  const out: NonNullable<FinetuneOptions['augment']> = {};
  for (const part of s.split(',').filter(Boolean)) {
    const [k, v] = part.split(':');
    if (k === 'flip') out.flip = true;
    else if (k === 'crop') {
      const p = Number(v ?? 4);
      if (!Number.isInteger(p) || p < 0) throw new ShearsError(`--augment crop:P needs an integer padding, not '${part}'`);
      out.cropPad = p;
    } else if (k !== 'none') throw new ShearsError(`unknown augmentation '${part}' (crop[:PAD], flip, none)`);
  }
  return out;
}

export function registerFinetune(program: Command): void {
  const cmd = program
    .command('finetune')
    .description('Fine-tune a (pruned) model inside onnxruntime: ONNX autodiff, SGD/AdamW, distillation, masks kept, iterative pruning')
    .argument('<model>', 'path to an .onnx file')
    .requiredOption('--train <spec>', 'training data (idx:DIR@train, folder:DIR, npy:X.npy,Y.npy, ...)')
    .option('--val <spec>', 'validation data, evaluated after every epoch')
    .requiredOption('-o, --output <path>', 'where to write the fine-tuned .onnx')
    .option('--epochs <n>', 'epochs (default 1)', positiveInt('--epochs'))
    .option('--batch <n>', 'batch size (default 128)', positiveInt('--batch'))
    .option('--lr <x>', 'learning rate (peak for onecycle; default 0.01)', num('--lr', 0))
    .option('--schedule <s>', 'cosine (default), onecycle, step:N, constant')
    .option('--optimizer <name>', 'sgd (default: momentum 0.9, nesterov) or adamw')
    .option('--momentum <x>', 'SGD momentum (default 0.9)', num('--momentum', 0, 1))
    .option('--no-nesterov', 'plain momentum instead of Nesterov')
    .option('--weight-decay <x>', 'weight decay (default 5e-4 for SGD, 0.01 for AdamW)', num('--weight-decay', 0))
    .option('--clip-norm <x>', 'clip the global gradient norm', num('--clip-norm', 0))
    .option('--label-smoothing <x>', 'label smoothing (default 0)', num('--label-smoothing', 0, 1))
    .option('--teacher <onnx>', 'distil from this (unpruned) model: KL at temperature T against its outputs')
    .option('--match-output <name>', 'with match-teacher: compare this value of both models (an output, or an intermediate tensor such as a detector head before box decoding)')
    .option('--objective <o>', 'classify (labels, cross-entropy) or match-teacher (mean squared error to --teacher\'s outputs: any output, unlabelled data); default: classify when possible')
    .option('--kd-temperature <t>', 'distillation temperature (default 4)', num('--kd-temperature', 0))
    .option('--kd-weight <w>', 'weight of the distillation term, CE gets 1 - w (default 0.5)', num('--kd-weight', 0, 1))
    .option('--augment <list>', 'crop[:PAD] (random crop after padding), flip (horizontal), none (default)')
    .option('--bn <mode>', 'none (default), reinsert (BN after convs for training, folded back), fresh (from scratch)')
    .option('--bn-reference <onnx>', 'with --bn reinsert: the unpruned model whose conv-output statistics the new BNs restore (default: --teacher)')
    .option('--reinit', 're-initialise all weights (train from scratch)')
    .option('--limit <n>', 'use at most N training samples', positiveInt('--limit'))
    .option('--seed <n>', 'seed for shuffling and augmentation (default 0)', num('--seed', 0))
    .option('--threads <n>', 'onnxruntime intra-op threads', positiveInt('--threads'))
    .option('--replicas <n>', 'data-parallel training replicas (worker threads splitting each batch; default one per core, up to 4, slices of >= 32 samples)', positiveInt('--replicas'))
    .option('--accumulate <k>', 'gradient accumulation: each replica runs its slice as K micro-batches (less memory; default 1)', positiveInt('--accumulate'))
    .option('--checkpoint <path>', 'write a checkpoint (.onnx with optimizer state) after every epoch and when interrupted; without it, Ctrl-C (SIGINT) or SIGTERM still writes one, to OUT.ckpt.onnx beside -o OUT.onnx')
    .option('--resume <path>', 'continue from a checkpoint, mid-epoch where it was interrupted (same data, batch and seed); may be the --checkpoint file. Ctrl-C (or SIGTERM) stops at the next step, writes the checkpoint, prints the command with this flag and exits with 130 (SIGTERM: 143); a second one aborts at once')
    .option('--gmp <sparsity>', 'gradual magnitude pruning to this global sparsity while fine-tuning (cubic schedule)', num('--gmp', 0, 0.999))
    .option('--lottery <sparsity>', 'lottery-ticket iterative magnitude pruning to this sparsity, rewinding weights', num('--lottery', 0, 0.999))
    .option('--iterative-macs <fraction>', 'iterative structured pruning to this fraction of MACs', num('--iterative-macs', 0, 1))
    .option('--prune-steps <n>', 'pruning steps/rounds of --gmp/--lottery/--iterative-macs (default 3)', positiveInt('--prune-steps'))
    .option('--rewind-epoch <n>', 'lottery ticket: rewind point in epochs (default 0)', num('--rewind-epoch', 0))
    .option('--json', 'print one JSON report on stdout');
  addPreprocessOptions(cmd).action(async (modelPath: string, o: Record<string, unknown>, command: Command) => {
    const model = loadModel(modelPath);
    const pp = preprocessFor(model, preprocessFlags(o));
    if (pp.warning) process.stderr.write(`shears: warning: ${pp.warning}\n`);
    const limit = typeof o['limit'] === 'number' ? o['limit'] : undefined;
    // Held in memory when they fit, read per batch otherwise; with a teacher, unlabelled data will do.
    // Opened once (iterative pruning fine-tunes several times).
    const labels = typeof o['teacher'] === 'string' ? 'optional' as const : 'required' as const;
    const trainData = firstSamples(await openData(o['train'] as string, pp.spec), limit);
    const valData = typeof o['val'] === 'string' ? await openData(o['val'], pp.spec) : undefined;
    const train = await SampleStore.open(trainData, { labels });
    const val = valData ? await SampleStore.open(valData, { labels }) : undefined;
    const optName = (o['optimizer'] as string | undefined) ?? 'sgd';
    let optimizer: OptimizerSpec;
    if (optName === 'sgd') {
      optimizer = { kind: 'sgd', momentum: (o['momentum'] as number | undefined) ?? 0.9, nesterov: o['nesterov'] !== false, weightDecay: (o['weightDecay'] as number | undefined) ?? 5e-4 };
    } else if (optName === 'adamw') {
      optimizer = { kind: 'adamw', weightDecay: (o['weightDecay'] as number | undefined) ?? 0.01 };
    } else throw new ShearsError(`unknown optimizer '${optName}' (sgd or adamw)`);
    const bn = (o['bn'] as string | undefined) ?? 'none';
    if (!['none', 'reinsert', 'fresh'].includes(bn)) throw new ShearsError(`--bn must be none, reinsert or fresh, not '${bn}'`);
    const opts: FinetuneOptions = {
      train,
      epochs: (o['epochs'] as number | undefined) ?? 1,
      optimizer,
      batchNorm: bn as FinetuneOptions['batchNorm'],
    };
    if (val) opts.val = val;
    if (typeof o['batch'] === 'number') opts.batch = o['batch'];
    if (typeof o['lr'] === 'number') opts.lr = o['lr'];
    if (typeof o['schedule'] === 'string') opts.schedule = parseSchedule(o['schedule']);
    if (typeof o['clipNorm'] === 'number') opts.clipNorm = o['clipNorm'];
    if (typeof o['labelSmoothing'] === 'number') opts.labelSmoothing = o['labelSmoothing'];
    if (typeof o['teacher'] === 'string') opts.teacher = loadModel(o['teacher']);
    if (typeof o['matchOutput'] === 'string') opts.matchOutput = o['matchOutput'];
    if (o['objective'] !== undefined) {
      if (o['objective'] !== 'classify' && o['objective'] !== 'match-teacher') throw new ShearsError(`--objective must be classify or match-teacher, not '${String(o['objective'])}'`);
      opts.objective = o['objective'];
    }
    if (typeof o['kdTemperature'] === 'number') opts.kdTemperature = o['kdTemperature'];
    if (typeof o['kdWeight'] === 'number') opts.kdWeight = o['kdWeight'];
    if (typeof o['augment'] === 'string') opts.augment = parseAugment(o['augment']);
    if (typeof o['bnReference'] === 'string') opts.bnReference = loadModel(o['bnReference']);
    if (o['reinit']) opts.reinit = true;
    // Before minutes of training: a model that should work but scores near chance means the inputs are wrong.
    if (!opts.reinit) await checkNotNearChance(opts.teacher ?? model, valData ?? trainData, opts.teacher ? 'the teacher' : 'the model', { mayBeUntrained: !opts.teacher });
    if (typeof o['seed'] === 'number') opts.seed = o['seed'];
    if (typeof o['threads'] === 'number') opts.threads = o['threads'];
    if (typeof o['replicas'] === 'number') opts.replicas = o['replicas'];
    if (typeof o['accumulate'] === 'number') opts.accumulate = o['accumulate'];
    if (typeof o['checkpoint'] === 'string') opts.checkpoint = o['checkpoint'];
    if (typeof o['resume'] === 'string') opts.resume = o['resume'];

    const schedule = scheduleFromFlags(o);
    let report: Record<string, unknown>;
    let out;
    const output = o['output'] as string;
    if (!schedule) {
      const ckpt = opts.checkpoint ?? defaultCheckpoint(output);
      const r = await interruptible((signal) => finetune(model, { ...opts, signal, checkpointOnStop: ckpt }), () => ({
        what: `'${output}' was not written`,
        resume: `shears: to resume, add --resume ${shellQuote(ckpt)} to the same command${resumeCommand(command, ckpt)}`,
      }));
      out = r.model;
      report = {
        history: r.history, seconds: r.seconds,
        ...(r.initialValAcc !== undefined ? { initialValAcc: r.initialValAcc } : {}), finalValAcc: r.history.at(-1)?.valAcc,
        ...(r.initialValRelMse !== undefined ? { initialValRelMse: r.initialValRelMse, finalValRelMse: r.history.at(-1)?.valRelMse } : {}),
      };
    } else {
      if (opts.resume || opts.checkpoint) throw new ShearsError('--checkpoint/--resume are not supported with iterative pruning');
      const { epochs, ...rest } = opts;
      const r = await interruptible((signal) => pruneIteratively(model, schedule, epochs, { ...rest, signal }, (st) => process.stderr.write(`${formatStage(st)}\n`)),
        () => ({ what: `'${output}' was not written`, resume: 'shears: iterative pruning keeps no checkpoint: run the command again to start over' }));
      out = r.model;
      report = { mode: MODE_NAMES[schedule.kind], stages: r.stages, seconds: r.seconds, finalValAcc: r.stages.at(-1)?.acc };
    }
    if (pp.from === 'flags' || pp.from === 'metadata+flags') writePreprocess(out, pp.spec);
    saveModel(out, output);
    const full = { model: modelPath, output, train: train.n, ...(val ? { val: val.n } : {}), ...report };
    if (o['json']) process.stdout.write(`${JSON.stringify(full)}\n`);
    else {
      const acc = report['finalValAcc'];
      const rel = report['finalValRelMse'];
      const score = typeof acc === 'number' ? ` (val top-1 ${(acc * 100).toFixed(2)}%)` : typeof rel === 'number' ? ` (val relMSE vs teacher ${(report['initialValRelMse'] as number).toExponential(3)} -> ${rel.toExponential(3)})` : '';
      process.stdout.write(`wrote ${output}${score} in ${(report['seconds'] as number).toFixed(1)} s\n`);
    }
  });
}

/** The report's name of each schedule (the flag that asks for it). */
const MODE_NAMES = { gmp: 'gmp', lottery: 'lottery', macs: 'iterativeMacs' } as const;

/** The iterative schedule --gmp, --lottery or --iterative-macs asks for (with --prune-steps, --rewind-epoch). */
function scheduleFromFlags(o: Record<string, unknown>): IterativeSchedule | undefined {
  const given = (['gmp', 'lottery', 'iterativeMacs'] as const).filter((k) => o[k] !== undefined);
  if (given.length > 1) throw new ShearsError('give at most one of --gmp, --lottery, --iterative-macs');
  const steps = o['pruneSteps'] as number | undefined;
  const common = steps !== undefined ? { steps } : {};
  const rewind = o['rewindEpoch'] as number | undefined;
  const flag = (key: string) => {
    const field = key.split('.').pop();
    return field === 'steps' ? '--prune-steps' : field === 'rewindEpoch' ? '--rewind-epoch' : `--${given[0]!.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
  };
  const v = given[0] === 'gmp' ? { kind: 'gmp', sparsity: o['gmp'], ...common }
    : given[0] === 'lottery' ? { kind: 'lottery', sparsity: o['lottery'], ...common, ...(rewind !== undefined ? { rewindEpoch: rewind } : {}) }
    : given[0] === 'iterativeMacs' ? { kind: 'macs', target: o['iterativeMacs'], ...common } : undefined;
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
