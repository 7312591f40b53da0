/**
 * The steps of a pipeline and their options, declared once: key, value type, default, help and command-line
 * spelling. The recipe validator (recipe.ts), the step types below and the `shears prune` flags (cli/prune.ts)
 * are generated from these tables.
 */
import { REPAIR_METHODS } from '../repair/repair.js';
import { parsePattern } from '../sparsity/nm.js';
import {
  booleanType, dataType, dflt, fractionsByName, listOf, numberType, objectType, oneOf, opt, regexType, req, stringListType,
  type Given, type OptionDef, type OptionType,
} from './options.js';
import { validateTarget } from './target.js';
import { validateSchedule } from './iterative.js';

/**
 * Default roundTo (--round-to), from measurements (bench/latency-roundto.ts, onnxruntime-node 1.30 on an AVX-512
 * machine, 50% MACs, CPU time with 1 thread): round-to 1 ran 0.8x (fmnist_resnet20, batch 128, slower than dense),
 * 8 ran 1.2x, 16 ran 1.6x; resnet18 batch 1: 1.6x / 1.6x / 1.85x. onnxruntime's NCHWc convolutions work in blocks
 * of 16 channels there.
 */
export const DEFAULT_ROUND_TO = 16;

const fraction = numberType({ min: 0, max: 1, maxExclusive: true });
const positiveFraction = numberType({ min: 0, max: 1, minExclusive: true });
const positiveInt = numberType({ min: 1, integer: true });
const count = numberType({ min: 0, integer: true });

const patternType: OptionType<string> = {
  describe: 'N:M with 0 < N <= M (e.g. 2:4)',
  fromJson: (v) => (typeof v === 'string' && validPattern(v) ? v : undefined),
  fromCli: (v) => (typeof v === 'string' && validPattern(v) ? v : undefined),
};

function validPattern(s: string): boolean {
  try {
    parsePattern(s);
    return true;
  } catch {
    return false;
  }
}

/** A calibration set for quantization: a data set, or 'random' (random normal inputs, for random-weight models). */
const calibType: OptionType<string> = { ...dataType, describe: `${dataType.describe}, or random` };

const targetType = objectType('a target { kind: ratio | macs | params | latency | plan, ... }', validateTarget);
const scheduleType = objectType('a schedule { kind: gmp | lottery | macs, ... }', validateSchedule);

const selection = [
  opt('include', regexType, { flag: '--include <regex>', help: 'only prune weights whose initializer or node name matches' }),
  opt('exclude', regexType, { flag: '--exclude <regex>', help: 'do not prune weights whose initializer or node name matches' }),
  dflt('keepFirstLast', booleanType, false, { flag: '--keep-first-last', help: 'keep the first and the last layer dense' }),
  dflt('method', oneOf(['l1', 'random'] as const), 'l1', { flag: '--method <m>', help: 'l1 (smallest |w| first) or random' }),
  dflt('seed', count, 0, { flag: '--seed <n>', help: 'seed for --method random' }),
  dflt('masks', booleanType, true, {
    switches: { '--no-masks': { value: false, help: 'bake the zeros in and store no masks (smaller file; later stages cannot tell pruned zeros)' } },
    help: 'store the masks in the model (false: bake the zeros in; smaller file, later steps cannot tell pruned zeros)',
  }),
] as const;

export const UNSTRUCTURED_OPTIONS = [
  req('sparsity', fraction, { flag: '--sparsity <s>', help: 'fraction in [0,1) of the still-unpruned layer weights to prune' }),
  dflt('scope', oneOf(['global', 'layer', 'lamp'] as const), 'global', {
    switches: {
      '--global': { value: 'global', help: 'one magnitude threshold over all selected weights (default)' },
      '--per-layer': { value: 'layer', help: 'the same fraction in every layer (exact per layer)' },
      '--lamp': { value: 'lamp', help: 'layer-adaptive amounts from one threshold over LAMP scores' },
    },
    help: 'global: one magnitude threshold over all selected weights; layer: the same fraction in every layer; lamp: layer-adaptive amounts from LAMP scores',
  }),
  ...selection,
  opt('layerSparsity', fractionsByName(fraction), { flag: '--layer-sparsity <name=s...>', help: 'own fraction for a layer, by initializer or node name (repeatable)' }),
] as const;

export const NM_OPTIONS = [
  req('pattern', patternType, { flag: '--pattern <N:M>', help: 'N:M semi-structured sparsity along the reduction axis (e.g. 2:4) instead of --sparsity' }),
  dflt('scope', oneOf(['global'] as const), 'global', { switches: { '--global': { value: 'global', help: 'accepted: N:M has no other scope' } }, help: 'global only: N:M keeps N of every M weights in each layer' }),
  ...selection,
] as const;

export const STRUCTURED_OPTIONS = [
  opt('target', targetType, { help: 'what to reach: { kind: ratio | macs | params | latency | plan, value | plan }' }),
  dflt('importance', oneOf(['l1', 'l2', 'fpgm', 'random', 'taylor'] as const), 'l2', { flag: '--importance <kind>', help: 'channel importance: l1, l2, fpgm, random or taylor (needs --taylor-data)' }),
  dflt('aggregate', oneOf(['sum', 'mean', 'max'] as const), 'mean', { flag: '--aggregate <how>', help: 'combine a channel\'s coupled parameters by sum, mean or max' }),
  dflt('global', booleanType, false, {
    switches: { '--global': { value: true, help: 'rank channels globally instead of removing the same fraction from each group' } },
    help: 'rank channels globally instead of removing the same fraction from each group',
  }),
  dflt('roundTo', positiveInt, DEFAULT_ROUND_TO, { flag: '--round-to <n>', help: 'kept channel counts are multiples of n (1 for exact counts)' }),
  dflt('maxLayerRatio', positiveFraction, 0.9, { flag: '--max-layer-ratio <r>', help: 'remove at most this fraction of any group' }),
  opt('ignore', regexType, { flag: '--ignore <regex>', help: 'do not prune layers whose node or weight name matches' }),
  opt('removeBlocks', count, { flag: '--remove-blocks <k>', help: 'remove the k least important residual branches (depth pruning)' }),
  opt('inputShape', stringListType, { flag: '--input-shape <spec...>', help: 'static input shape NAME=1x3x224x224 (repeatable)' }),
  opt('taylorData', dataType, { flag: '--taylor-data <spec>', help: 'labelled data for Taylor importance (cross-entropy gradients)' }),
  dflt('taylorBatches', positiveInt, 4, { flag: '--taylor-batches <n>', help: 'batches of 32 for Taylor importance' }),
  opt('threads', positiveInt, { flag: '--threads <n>', help: 'onnxruntime threads for latency measurements and Taylor gradients' }),
  dflt('seed', count, 0, { flag: '--seed <n>', help: 'seed for random importance' }),
] as const;

export const REPAIR_OPTIONS = [
  req('methods', listOf(REPAIR_METHODS), { flag: '--repair <methods>', help: `training-free repair after pruning: ${REPAIR_METHODS.join(' | ')} (or a comma list, applied in order)` }),
  opt('calib', dataType, { flag: '--calib <spec>', help: 'calibration data set' }),
  dflt('calibSize', positiveInt, 512, { flag: '--calib-size <n>', help: 'calibration samples, drawn with a seed' }),
  dflt('calibSeed', count, 0, { flag: '--calib-seed <n>', help: 'seed for drawing the calibration samples' }),
  dflt('damp', numberType({ min: 0 }), 0.01, { flag: '--repair-damp <d>', help: 'damping of the repair normal equations, fraction of the mean Hessian diagonal' }),
  opt('pattern', patternType, { help: 'obs, wanda: choose N:M masks (default: the pattern of the prune step before)' }),
  opt('data', dataType, { flag: '--data <spec>', help: 'evaluation data: accuracy and fidelity of each stage (dense, pruned, repaired)' }),
  opt('dataLimit', positiveInt, { flag: '--data-limit <n>', help: 'evaluate at most N samples of --data' }),
] as const;

export const SCORE_OPTIONS = [
  req('data', dataType, { help: 'labelled data: accuracy of the model, and its fidelity to the dense model' }),
  opt('limit', positiveInt, { help: 'evaluate at most N samples' }),
] as const;

export const FINETUNE_OPTIONS = [
  req('epochs', positiveInt, {
    flag: '--finetune-epochs <n>',
    help: 'fine-tune the pruned model for N epochs inside onnxruntime (needs --train); Ctrl-C stops at the next step, writes OUT.ckpt.onnx beside -o OUT.onnx (the pruned model) and prints the `shears finetune OUT ... --resume` command that continues',
  }),
  req('train', dataType, { flag: '--train <spec>', help: 'training data' }),
  opt('val', dataType, { flag: '--val <spec>', help: 'validation data, evaluated after every epoch', defaultHelp: '--data' }),
  dflt('lr', numberType({ min: 0 }), 0.01, { flag: '--finetune-lr <x>', help: 'learning rate (SGD momentum 0.9 nesterov, wd 5e-4, cosine)' }),
  dflt('batch', positiveInt, 128, { flag: '--finetune-batch <n>', help: 'batch size' }),
  dflt('kd', booleanType, false, { flag: '--finetune-kd', help: 'distil from the original model while fine-tuning' }),
  opt('limit', positiveInt, { flag: '--finetune-limit <n>', help: 'fine-tune on at most N training samples' }),
  opt('replicas', positiveInt, { flag: '--finetune-replicas <n>', help: 'data-parallel training replicas', defaultHelp: 'one per core, up to 4' }),
  dflt('bn', oneOf(['none', 'reinsert'] as const), 'none', { flag: '--finetune-bn <mode>', help: 'none or reinsert (BatchNorm after convs while fine-tuning, scale/bias from the original model\'s statistics, folded back)' }),
  opt('threads', positiveInt, { flag: '--threads <n>', help: 'onnxruntime intra-op threads' }),
  opt('iterative', scheduleType, { help: 'prune while fine-tuning, `epochs` per pruning step: { kind: gmp | lottery, sparsity, steps?, rewindEpoch? } or { kind: macs, target, steps? }' }),
] as const;

export const QUANTIZE_MODES = ['int8', 'dynamic', 'fp16', 'int4'] as const;

const int8 = { key: 'mode', values: ['int8'] } as const;

export const QUANTIZE_OPTIONS = [
  req('mode', oneOf(QUANTIZE_MODES), { flag: '--quantize <mode>', help: `quantize as the last step: ${QUANTIZE_MODES.join(' | ')}` }),
  opt('calib', calibType, { flag: '--calib <spec>', help: 'calibration data set for int8 (or "random")', onlyWith: int8 }),
  dflt('calibSize', positiveInt, 256, { flag: '--calib-size <n>', help: 'calibration samples for int8', onlyWith: int8 }),
  dflt('calibrator', oneOf(['minmax', 'percentile', 'entropy'] as const), 'minmax', { flag: '--calibrator <c>', help: 'int8 calibrator: minmax | percentile | entropy', onlyWith: int8 }),
  opt('exclude', regexType, { flag: '--quant-exclude <regex>', help: 'keep nodes whose name matches in float' }),
] as const;

export type UnstructuredStep = { kind: 'prune'; mode: 'unstructured' } & Given<typeof UNSTRUCTURED_OPTIONS>;
export type NMStep = { kind: 'prune'; mode: 'nm' } & Given<typeof NM_OPTIONS>;
export type StructuredStep = { kind: 'prune'; mode: 'structured' } & Given<typeof STRUCTURED_OPTIONS>;
export type PruneStep = UnstructuredStep | NMStep | StructuredStep;
export type RepairStep = { kind: 'repair' } & Given<typeof REPAIR_OPTIONS>;
export type ScoreStep = { kind: 'score' } & Given<typeof SCORE_OPTIONS>;
export type FinetuneStep = { kind: 'finetune' } & Given<typeof FINETUNE_OPTIONS>;
export type QuantizeStep = { kind: 'quantize' } & Given<typeof QUANTIZE_OPTIONS>;
export type Step = PruneStep | RepairStep | ScoreStep | FinetuneStep | QuantizeStep;
export type StepKind = Step['kind'];
export type PruneMode = PruneStep['mode'];

export const STEP_KINDS: readonly StepKind[] = ['prune', 'repair', 'score', 'finetune', 'quantize'];
export const PRUNE_MODES: readonly PruneMode[] = ['unstructured', 'nm', 'structured'];

/** The options of a step kind (of a prune mode). */
export function optionsOf(kind: StepKind, mode?: PruneMode): readonly OptionDef[] {
  switch (kind) {
    case 'prune': return mode === 'structured' ? STRUCTURED_OPTIONS : mode === 'nm' ? NM_OPTIONS : UNSTRUCTURED_OPTIONS;
    case 'repair': return REPAIR_OPTIONS;
    case 'score': return SCORE_OPTIONS;
    case 'finetune': return FINETUNE_OPTIONS;
    case 'quantize': return QUANTIZE_OPTIONS;
  }
}

/** Which step follows which: a step may follow steps of a lower rank only (score goes anywhere). */
export const STEP_RANK: Readonly<Record<Exclude<StepKind, 'score'>, number>> = { prune: 0, repair: 1, finetune: 2, quantize: 3 };
