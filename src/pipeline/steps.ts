/**
 * The steps of a pipeline and their options, declared once: key, value type, default, help and command-line
 * spelling. The recipe validator (recipe.ts), the step types below and the `shears prune` flags (cli/prune.ts)
 * are generated from these tables.
 */
import { REPAIR_METHODS } from '../repair/repair.js';
import { DEFAULT_FIT_FIRST } from '../prune/calibrated.js';
import { parsePattern } from '../sparsity/nm.js';
import {
  booleanType, dataType, stringType, dflt, fractionsByName, listOf, numberType, objectType, oneOf, opt, regexType, req, stringListType,
  type Given, type OptionDef, type OptionType,
} from './options.js';
import { validateTarget } from './target.js';
import { validateSchedule } from './iterative.js';
import { parseSchedule } from '../train/schedule.js';
import { parseAugment } from '../data/in-memory.js';
import type { Model } from '../ir/graph.js';
import { opDef } from '../ops/registry.js';

/**
 * Default roundTo (--round-to): until a latency planner chooses widths, the rounding with the best accuracy at the
 * speed of the fastest. Measured (bench/latency-roundto.ts, onnxruntime-node, 50% MACs, CPU time per run with 1
 * thread, pruned vs dense) on an AMD EPYC with AVX2 (NCHWc blocks of 8): fmnist_resnet20 batch 128 round-to
 * 1/4/8/16 ran 0.93x/1.52x/1.84x/1.91x, resnet18 batch 1 1.37x/1.49x/1.91x/1.88x, batch 32 1.65x/1.80x/1.88x/1.82x:
 * 8 is as fast as 16 there, and its widths repair to 92.31% on fmnist_resnet20 against 88.18% for 16 (lsq, full
 * test set). Earlier, on an AVX-512 machine (blocks of 16): 1 ran 0.8x, 8 1.2x, 16 1.6x (fmnist_resnet20).
 */
export const DEFAULT_ROUND_TO = 8;

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

const sgd = { key: 'optimizer', values: ['sgd'] } as const;

/** A value type checked by a parser that throws on bad text (kept as the text: plain JSON). */
function parsedBy(describe: string, parse: (s: string) => unknown): OptionType<string> {
  const ok = (v: unknown) => {
    if (typeof v !== 'string') return undefined;
    try {
      parse(v);
      return v;
    } catch {
      return undefined;
    }
  };
  return { describe, fromJson: ok, fromCli: ok };
}

const lrScheduleType = parsedBy('cosine, cosine:W, onecycle, step:N or constant', parseSchedule);
const augmentType = parsedBy('a comma list of crop[:PAD], flip, none', parseAugment);

const targetType = objectType('a target { kind: ratio | macs | params | latency | plan, ... }', validateTarget);
const scheduleType = objectType('a schedule { kind: gmp | lottery | macs, ... }', validateSchedule);

/** Unstructured and N:M pruning methods: magnitude is l1's other name; wanda and sparsegpt need calibration data. */
export const PRUNE_METHODS = ['l1', 'magnitude', 'random', 'wanda', 'sparsegpt'] as const;
export type PruneMethod = (typeof PRUNE_METHODS)[number];
const calibrated = { key: 'method', values: ['wanda', 'sparsegpt'] } as const;
const sparsegpt = { key: 'method', values: ['sparsegpt'] } as const;

/** Calibration options of --method wanda and sparsegpt (the layers are pruned in order, on the pruned model's activations). */
const calibratedOptions = [
  opt('calib', dataType, { flag: '--calib <spec>', help: 'calibration data set', onlyWith: calibrated }),
  dflt('calibSize', positiveInt, 128, { flag: '--calib-size <n>', help: 'calibration samples, drawn with a seed', onlyWith: calibrated }),
  dflt('calibSeed', count, 0, { flag: '--calib-seed <n>', help: 'seed for drawing the calibration samples', onlyWith: calibrated }),
  dflt('damp', numberType({ min: 0, minExclusive: true }), 0.01, { flag: '--damp <d>', help: 'sparsegpt: damping of the layer Hessian, fraction of its mean diagonal', onlyWith: sparsegpt }),
  dflt('sparsegptBlock', positiveInt, 128, { flag: '--sparsegpt-block <n>', help: 'sparsegpt: columns per mask-selection block', onlyWith: sparsegpt }),
  dflt('fitFirst', booleanType, DEFAULT_FIT_FIRST, {
    switches: { '--fit-first': { value: true, help: 'sparsegpt: refit each layer to the dense model\'s output by least squares before pruning (the dense forward pass and cross terms per layer: about 1.7x the CPU time; tiny_llama_py 2:4 2.2266 -> 2.2187 bits/byte, 50% 2.2126 -> 2.2105)' } },
    help: 'sparsegpt: refit each layer to the dense output by least squares before pruning',
    onlyWith: sparsegpt,
  }),
  opt('threads', positiveInt, { flag: '--threads <n>', help: 'onnxruntime intra-op threads', onlyWith: calibrated }),
] as const;

const selection = [
  opt('include', regexType, { flag: '--include <regex>', help: 'only prune weights whose initializer or node name matches' }),
  opt('exclude', regexType, { flag: '--exclude <regex>', help: 'do not prune weights whose initializer or node name matches' }),
  dflt('keepFirstLast', booleanType, false, { flag: '--keep-first-last', help: 'keep the first and the last layer dense' }),
  opt('inputValue', stringListType, { flag: '--input-value <spec...>', help: 'pin an input to a value, NAME=16000: what depends only on it folds (an If on it keeps only its branch); the pruned model is specialised to that value' }),
  dflt('method', oneOf(PRUNE_METHODS), 'l1', {
    flag: '--method <m>',
    help: 'l1 or magnitude (the same: smallest |w| first), random, wanda (|w| x input norm, per output row; needs --calib) or sparsegpt (OBS with weight updates, layer by layer; needs --calib)',
  }),
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
  ...calibratedOptions,
  dflt('owl', booleanType, false, {
    switches: { '--owl': { value: true, help: 'OWL: per-block sparsity from each transformer block\'s share of outlier Wanda scores (more outliers, less pruning), averaging --sparsity; with --method wanda or sparsegpt' } },
    help: 'OWL (outlier-weighed layerwise) sparsity per block, averaging the sparsity',
    onlyWith: calibrated,
  }),
  dflt('owlM', numberType({ min: 0, minExclusive: true }), 5, { flag: '--owl-m <m>', help: 'OWL: a score above M x its block\'s mean score is an outlier', onlyWith: calibrated }),
  dflt('owlLambda', numberType({ min: 0, max: 0.5 }), 0.04, { flag: '--owl-lambda <l>', help: 'OWL: block sparsities range over sparsity +- lambda (0.04 measured best on tiny_llama_py; the paper used 0.08 on LLaMA-7B)', onlyWith: calibrated }),
] as const;

export const NM_OPTIONS = [
  req('pattern', patternType, { flag: '--pattern <N:M>', help: 'N:M semi-structured sparsity along the reduction axis (e.g. 2:4) instead of --sparsity' }),
  dflt('scope', oneOf(['global'] as const), 'global', { switches: { '--global': { value: 'global', help: 'accepted: N:M has no other scope' } }, help: 'global only: N:M keeps N of every M weights in each layer' }),
  ...selection,
  ...calibratedOptions,
] as const;

/**
 * The structured importance when none is given: activation-aware when calibration data is at hand, else l2.
 * Measured (50% of the MLP neurons of vit_fmnist and tiny_llama_py, 50% of fmnist_resnet20's MACs; one-shot and
 * with lsq repair; see README): activation matched or beat l2 on all three, by far on the LM (2.2724 vs 2.6882
 * bits/byte one-shot, 2.2259 vs 2.2330 repaired) and on the CNN one-shot (34.86% vs 10.25%; 92.41% vs 92.31%
 * repaired); on the ViT both are within 0.1% of the dense 85.69%.
 */
export function defaultImportance(step: { importance?: string; calib?: string }): 'l1' | 'l2' | 'fpgm' | 'random' | 'taylor' | 'activation' {
  // 'random' calibration (quantize's random inputs, for random-weight models) is no data to rank by
  return (step.importance as ReturnType<typeof defaultImportance> | undefined) ?? (step.calib !== undefined && step.calib !== 'random' ? 'activation' : 'l2');
}

/**
 * Default fine-tuning optimizers and learning rates (cosine schedule, batch 128). CNNs: SGD, Nesterov momentum
 * 0.9, weight decay 5e-4, lr 0.01 (the measured results with fmnist_resnet20). Transformers: AdamW (weight decay
 * 0.01) at 3e-4: vit_fmnist at 50% MACs (heads 3/3/3/3, MLP 48-56, lsq-repaired, 84.60%), one epoch gave 85.66%
 * with AdamW 3e-4, 85.39% with SGD 0.003 (the former default); AdamW at 1e-3 trailed SGD by 3 points of training
 * accuracy half-way (README, bench/transformers.ts). Asked for SGD, a transformer gets TRANSFORMER_SGD_LR: on the
 * former plan (83.07%) one epoch gave 81.89% at 0.01, 84.52% at 0.001, 84.91% at 0.003, 84.95% at 0.005.
 */
export const CNN_LR = 0.01;
/**
 * A CNN distilled from the dense model with BatchNorm (the default after pruning a BN-folded or BN network): SGD
 * at 0.02. fmnist_resnet20, 2 epochs, test top-1 at 0.01 vs 0.02: the 0.6-latency plan (lsq-repaired 91.23%),
 * seeds 0/1/2: 93.09/93.05/92.96% vs 93.31/93.01/93.05%; the 50%-MAC default plan: 93.37% vs 93.49% (mean +0.10;
 * 0.04 gave 93.23% on seed 0). Without distillation and BatchNorm the default stays CNN_LR (a BN-free pruned
 * network was measured to diverge at 0.01 with distillation; see finetuneChoices).
 */
export const CNN_KD_LR = 0.02;
export const TRANSFORMER_LR = 3e-4;
export const TRANSFORMER_SGD_LR = 0.003;
/**
 * The default fine-tuning batch: 128; 64 for a transformer (twice the AdamW steps per epoch): vit_fmnist at 50%
 * MACs (heads 3/3/3/3, MLP 48, repaired 84.73%), one epoch of AdamW 3e-4 gave 85.95% at batch 64, 85.68% at 128
 * (and 85.80% at 5e-4, batch 128).
 */
export const FINETUNE_BATCH = 128;
export const TRANSFORMER_BATCH = 64;

/**
 * The default head rate of a transformer (a network with LayerNormalization or an RMS norm) under a MAC/param
 * target in uniform mode: attention units lose 0.3x the fraction the MLP neurons lose (plan/plan.ts headRate).
 * Measured on vit_fmnist at --target-macs 0.5 with lsq repair (README): heads kept 2/2/2/2 with MLP 128 (level
 * fractions) 82.72%; 2/3/4/3 heads with MLP 48-56 83.82%; 3/3/3/3 with MLP 48-56 84.60%; 2/3/4/4 with MLP 32 84.01%.
 */
export const TRANSFORMER_HEAD_RATE = 0.3;

/** A transformer, for the defaults above: a network with a feature normalisation (LayerNormalization, an RMS norm). */
export function isTransformer(model: Model): boolean {
  return model.graph.nodes.some((n) => opDef(n)?.featureNorm === true);
}

/** A latency table file, or false for none. */
const latencyCacheType: OptionType<string | false> = {
  describe: 'a file path, or false',
  fromJson: (v) => (v === false || (typeof v === 'string' && v !== '') ? v : undefined),
  fromCli: (v) => (v === false || (typeof v === 'string' && v !== '') ? v : undefined),
};

export const STRUCTURED_OPTIONS = [
  opt('target', targetType, { help: 'what to reach: { kind: ratio | macs | params | latency | plan, value | plan }' }),
  opt('importance', oneOf(['l1', 'l2', 'fpgm', 'random', 'taylor', 'activation'] as const), {
    flag: '--importance <kind>',
    help: 'channel importance: l1, l2 (weight magnitudes), fpgm, random, taylor (|w x gradient|, needs --taylor-data) or activation (Wanda-style: |w| x input RMS of the layers that read the channel, from --calib data)',
    defaultHelp: `activation when calibration data is given (--calib), else l2`,
  }),
  dflt('aggregate', oneOf(['sum', 'mean', 'max'] as const), 'mean', { flag: '--aggregate <how>', help: 'combine a channel\'s coupled parameters by sum, mean or max' }),
  dflt('global', booleanType, false, {
    switches: { '--global': { value: true, help: 'rank channels globally instead of removing the same fraction from each group' } },
    help: 'rank channels globally instead of removing the same fraction from each group',
  }),
  dflt('roundTo', positiveInt, DEFAULT_ROUND_TO, { flag: '--round-to <n>', help: 'kept channel counts are multiples of n (1 for exact counts)' }),
  opt('headRate', positiveFraction, {
    flag: '--head-rate <r>',
    help: 'MAC/param/latency targets without --global (the level and the budget planner): attention units (heads, KV groups, head_dim positions) lose r times the fraction the other groups (MLP neurons, channels) lose',
    defaultHelp: `${TRANSFORMER_HEAD_RATE} for a transformer (a network with LayerNormalization or an RMS norm), else 1 (level fractions)`,
  }),
  dflt('maxLayerRatio', positiveFraction, 0.9, { flag: '--max-layer-ratio <r>', help: 'remove at most this fraction of any group' }),
  opt('ignore', regexType, { flag: '--ignore <regex>', help: 'do not prune layers whose node or weight name matches, nor remove a residual block whose name or residual Add matches' }),
  opt('removeBlocks', count, { flag: '--remove-blocks <k>', help: 'remove the k least important depth units (residual blocks; see --block-unit, --block-rank); with --target-latency they go first (least importance per ms saved) and the widths are planned on the rest' }),
  dflt('blockUnit', oneOf(['block', 'attention', 'mlp'] as const), 'block', { flag: '--block-unit <unit>', help: 'depth unit: block (a transformer block: attention + MLP; any other residual branch), attention or mlp (that sub-block only)' }),
  dflt('blockRank', oneOf(['auto', 'influence', 'loss', 'magnitude'] as const), 'auto', {
    flag: '--block-rank <how>',
    help: 'rank depth units by influence (1 - cos of the residual stream before/after, on --calib data), loss (output KL divergence from the dense model when the unit alone is removed, on --calib data) or magnitude (parameter RMS); auto: influence with --calib (loss under --target-latency), else magnitude; under --target-latency each score is divided by the ms the unit\'s removal saves',
  }),
  opt('inputShape', stringListType, { flag: '--input-shape <spec...>', help: 'static input shape NAME=1x3x224x224 (repeatable)' }),
  opt('inputValue', stringListType, { flag: '--input-value <spec...>', help: 'pin an input to a value, NAME=16000: what depends only on it folds (an If on it keeps only its branch); the pruned model is specialised to that value' }),
  dflt('attentionUnits', oneOf(['heads', 'head-dim'] as const), 'heads', {
    flag: '--attention-units <u>',
    help: 'where a hidden axis is split into heads x head_dim: remove whole heads (heads; under grouped-query attention a KV head goes with its query heads) or the same head_dim entries of every head (head-dim; rotary pairs stay together)',
  }),
  dflt('hiddenSize', booleanType, false, {
    switches: { '--hidden-size': { value: true, help: 'also prune the hidden size (axes LayerNormalization or a decomposed RMSNorm normalises over: a transformer\'s residual stream, embeddings, LM head); not exact, repair or fine-tune after' } },
    help: 'also prune axes a normalisation averages over (the hidden size of a transformer); not exact: the statistics change',
  }),
  opt('taylorData', dataType, { flag: '--taylor-data <spec>', help: 'data for Taylor importance: labelled samples of a classifier (cross-entropy gradients), or token windows of a language model (tokens:FILE,context=T: next-token cross-entropy)' }),
  dflt('taylorBatches', positiveInt, 4, { flag: '--taylor-batches <n>', help: 'batches of 32 for Taylor importance' }),
  opt('calib', calibType, { flag: '--calib <spec>', help: 'calibration data set (activation importance, depth ranking by influence or loss; "random" gives none)' }),
  dflt('calibSize', positiveInt, 512, { flag: '--calib-size <n>', help: 'calibration samples, drawn with a seed' }),
  dflt('calibSeed', count, 0, { flag: '--calib-seed <n>', help: 'seed for drawing the calibration samples' }),
  opt('threads', positiveInt, { flag: '--threads <n>', help: 'onnxruntime threads for latency measurements and Taylor gradients' }),
  dflt('seed', count, 0, { flag: '--seed <n>', help: 'seed for random importance' }),
  dflt('allocation', oneOf(['auto', 'level', 'budget'] as const), 'auto', {
    flag: '--allocation <how>',
    help: 'how targets choose widths: level (kept fractions levelled, or --global ranking; a latency target levelled step by step on the measured latency table) or budget (least importance lost per MAC, parameter or ms saved, widths multiples of --round-to); auto: level',
  }),
  opt('latencyCache', latencyCacheType, {
    flag: '--latency-cache <file>',
    switches: { '--no-latency-cache': { value: false, help: '--target-latency: neither read nor write a latency table (measure everything again)' } },
    help: 'latency table file for --target-latency (false: none)',
    defaultHelp: '~/.cache/shears/latency-<hash of runtime, CPU, threads>.json ($XDG_CACHE_HOME)',
  }),
  dflt('landingCheck', booleanType, true, {
    switches: { '--no-landing-check': { value: false, help: '--target-latency: keep the first plan unmeasured (by default the planned model is timed against the dense one, interleaved, and planned again for a corrected target, at most 3 plans, while it lands more than 3% off; the measurements are kept in the latency table)' } },
    help: '--target-latency: time the planned model against the dense one and plan again for a corrected target while it lands more than 3% off (at most 3 plans)',
  }),
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

/**
 * The score step; `shears eval` is its own command (a one-step recipe, the run's reference model from
 * --reference). `shears quantize --data` adds one too (data and limit only, see cli/quantize.ts).
 */
export const SCORE_OPTIONS = [
  req('data', dataType, {
    help: 'labelled data: accuracy of the model, and its fidelity to the dense model',
    own: { flag: '--data <spec>', help: 'data set: idx:FILE[,LABELS] | idx:DIR[@split] | folder:DIR | npy:X.npy[,Y.npy] | npz:F.npz[,XKEY[,YKEY]] | tokens:FILE.bin[,context=T] (token data: perplexity) | a plain path' },
  }),
  opt('limit', positiveInt, { help: 'evaluate at most N samples', own: { flag: '--limit <n>' } }),
  dflt('batch', positiveInt, 64, { help: 'batch size', own: { flag: '--batch <n>' } }),
  opt('threads', positiveInt, { help: 'onnxruntime intra-op threads', own: { flag: '--threads <n>' } }),
  opt('output', stringType, { help: 'output scored for accuracy', defaultHelp: 'the first [N, K] output', own: { flag: '--output <name>' } }),
  dflt('dense', booleanType, true, { help: 'score the dense model too (once per data set and settings), for comparison', own: 'none' }),
] as const;

/**
 * The report step: evidence of the model as it stands (the last step) against the dense model, as `shears report
 * DENSE MODEL` gathers it (report/evidence.ts). `shears report` spells these options as its own flags.
 */
export const REPORT_OPTIONS = [
  opt('data', dataType, { help: 'labelled data: accuracy of both models, fidelity of the model to the dense one', own: { flag: '--data <spec>', help: 'labelled data set: accuracy of every model, fidelity of each variant to the base' } }),
  opt('dataLimit', positiveInt, { help: 'evaluate at most N samples', own: { flag: '--data-limit <n>' } }),
  dflt('evalBatch', positiveInt, 64, { help: 'evaluation batch size', own: { flag: '--eval-batch <n>' } }),
  dflt('batch', positiveInt, 1, { help: 'latency: value for dynamic batch dimensions', own: { flag: '--batch <n>' } }),
  opt('threads', positiveInt, { help: 'onnxruntime intra-op threads', defaultHelp: 'onnxruntime\'s choice', own: { flag: '--threads <n>' } }),
  dflt('warmup', positiveInt, 5, { help: 'latency: untimed runs per model', own: { flag: '--warmup <n>' } }),
  dflt('runs', positiveInt, 30, { help: 'latency: timed runs per model, interleaved across models', own: { flag: '--runs <n>' } }),
] as const;

export const FINETUNE_OPTIONS = [
  req('epochs', positiveInt, {
    flag: '--finetune-epochs <n>',
    help: 'fine-tune the pruned model for N epochs inside onnxruntime (needs --train); Ctrl-C stops at the next step, writes OUT.ckpt.onnx beside -o OUT.onnx (the pruned model) and prints the `shears finetune OUT ... --resume` command that continues',
    own: { flag: '--epochs <n>', help: 'epochs (default 1)' },
  }),
  req('train', dataType, { flag: '--train <spec>', help: 'training data', own: { help: 'training data (idx:DIR@train, folder:DIR, npy:X.npy,Y.npy, tokens:FILE.bin, ...)' } }),
  opt('steps', positiveInt, { flag: '--finetune-steps <n>', help: 'token data (language models): optimizer steps of --finetune-batch windows at random offsets', defaultHelp: '120', own: { flag: '--steps <n>', help: 'token data (language models): optimizer steps, each on --batch windows at random offsets (default 120; epochs do not apply to a token stream)', defaultHelp: undefined } }),
  opt('val', dataType, { flag: '--val <spec>', help: 'validation data, evaluated after every epoch', defaultHelp: '--data', own: { defaultHelp: undefined } }),
  opt('lr', numberType({ min: 0 }), { flag: '--finetune-lr <x>', help: 'learning rate (peak; cosine schedule)', defaultHelp: `${CNN_LR} (SGD), ${CNN_KD_LR} when distilling with BatchNorm (the default after pruning a CNN); ${TRANSFORMER_LR} (AdamW) for a transformer (a network with LayerNormalization or an RMS norm), ${TRANSFORMER_SGD_LR} there with SGD; language models on token data: 1e-3 with AdamW`, own: { flag: '--lr <x>', help: 'learning rate (peak for onecycle)' } }),
  opt('schedule', lrScheduleType, { help: 'learning-rate schedule: cosine (default), cosine:W (linear warmup over W steps, then cosine), onecycle, step:N, constant', own: { flag: '--schedule <s>', help: 'cosine (default), cosine:W (linear warmup over W steps, then cosine), onecycle, step:N, constant' } }),
  dflt('optimizer', oneOf(['sgd', 'adamw'] as const), 'sgd', {
    flag: '--finetune-optimizer <name>',
    help: 'sgd (momentum, nesterov) or adamw',
    defaultHelp: 'sgd; adamw for a transformer (a network with LayerNormalization or an RMS norm) and on token data',
    own: { flag: '--optimizer <name>', defaultHelp: 'sgd; adamw for a transformer (a network with LayerNormalization or an RMS norm) unless --momentum or --no-nesterov is given; adamw on token data' },
  }),
  dflt('momentum', numberType({ min: 0, max: 1 }), 0.9, { help: 'SGD momentum', onlyWith: sgd, own: { flag: '--momentum <x>' } }),
  dflt('nesterov', booleanType, true, { help: 'Nesterov momentum (false: plain momentum)', onlyWith: sgd, own: { switches: { '--no-nesterov': { value: false, help: 'plain momentum instead of Nesterov' } } } }),
  opt('weightDecay', numberType({ min: 0 }), { help: 'weight decay', defaultHelp: '5e-4 for SGD, 0.01 for AdamW', own: { flag: '--weight-decay <x>' } }),
  opt('clipNorm', numberType({ min: 0 }), { help: 'clip the global gradient norm', own: { flag: '--clip-norm <x>' } }),
  opt('labelSmoothing', numberType({ min: 0, max: 1 }), { help: 'label smoothing', defaultHelp: '0', own: { flag: '--label-smoothing <x>' } }),
  dflt('batch', positiveInt, FINETUNE_BATCH, { flag: '--finetune-batch <n>', help: 'batch size', defaultHelp: `${FINETUNE_BATCH}; ${TRANSFORMER_BATCH} for a transformer; token data: 16 windows`, own: { flag: '--batch <n>', defaultHelp: `${FINETUNE_BATCH}; ${TRANSFORMER_BATCH} for a transformer; token data: 16 windows` } }),
  opt('kd', booleanType, {
    switches: {
      '--finetune-kd': { value: true, help: 'distil from the original (dense) model while fine-tuning (the default after pruning, where the network has or gets BatchNorm, and for a detector: on its pre-decode head)' },
      '--no-kd': { value: false, help: 'fine-tune on the labels alone: no distillation from the dense model (on by default after pruning)' },
    },
    help: 'distil from the original (dense) model while fine-tuning',
    defaultHelp: 'true after a prune step (the dense model is at hand) where the network has or gets BatchNorm or is a detector (distilled on its pre-decode head), else false',
    own: 'none',
  }),
  opt('objective', oneOf(['classify', 'match-teacher', 'detect'] as const), {
    flag: '--finetune-objective <o>',
    help: 'classify (labels, cross-entropy), match-teacher (mean squared error to the teacher\'s outputs: any output, unlabelled data) or detect (YOLOv8\'s detection loss on a YOLO head: task-aligned assignment, BCE classes, CIoU + DFL boxes; needs detection data with boxes, yolo:DIR/data.yaml@train); default: classify when possible',
    own: { flag: '--objective <o>', help: 'classify (labels, cross-entropy), match-teacher (mean squared error to --teacher\'s outputs: any output, unlabelled data) or detect (YOLOv8\'s detection loss on a YOLO head: task-aligned assignment, BCE classes, CIoU + DFL boxes; needs detection data with boxes, yolo:DIR/data.yaml@train); default: classify when possible' },
  }),
  opt('detAssign', oneOf(['student', 'reference'] as const), {
    flag: '--finetune-det-assign <a>',
    help: 'with the detect objective: align the task-aligned assignment on the model being trained, every step (student, as Ultralytics), or once per image on the dense model\'s predictions (reference)',
    defaultHelp: 'student',
    own: { flag: '--det-assign <a>', help: 'with --objective detect: align the task-aligned assignment on the model being trained, every step (student, as Ultralytics), or once per image on --teacher\'s (else the starting model\'s) predictions (reference)', defaultHelp: 'student' },
  }),
  opt('detDistill', oneOf(['mse', 'ce', 'ce-all'] as const), {
    flag: '--finetune-det-distill <l>',
    help: 'the loss of a detector\'s default distillation on its pre-decode head: mse (squared error of the box-bin and class probabilities), ce (cross-entropy of each side\'s box bins weighted by the teacher\'s class confidence at the anchor, BCE of the classes) or ce-all (the same, every anchor\'s bins weighted alike)',
    defaultHelp: 'ce',
    own: { flag: '--det-distill <l>' },
  }),
  opt('matchOutput', stringType, { help: 'with match-teacher: compare this value of both models (an output, or an intermediate tensor such as a detector head before box decoding)', own: { flag: '--match-output <name>' } }),
  opt('kdTemperature', numberType({ min: 0 }), { help: 'distillation temperature', defaultHelp: '4', own: { flag: '--kd-temperature <t>' } }),
  opt('kdWeight', numberType({ min: 0, max: 1 }), { help: 'weight of the distillation term, CE gets 1 - w', defaultHelp: '0.5', own: { flag: '--kd-weight <w>' } }),
  opt('augment', augmentType, { help: 'crop[:PAD] (random crop after padding), flip (horizontal), none (default)', own: { flag: '--augment <list>' } }),
  opt('limit', positiveInt, { flag: '--finetune-limit <n>', help: 'fine-tune on at most N training samples', own: { flag: '--limit <n>', help: 'use at most N training samples' } }),
  opt('replicas', positiveInt, {
    flag: '--finetune-replicas <n>', help: 'data-parallel training replicas', defaultHelp: 'one per core, up to 4',
    own: { flag: '--replicas <n>', help: 'data-parallel training replicas (worker threads splitting each batch; default one per core, up to 4, slices of >= 32 samples)', defaultHelp: undefined },
  }),
  opt('accumulate', positiveInt, { help: 'gradient accumulation: each replica runs its slice as K micro-batches (less memory)', defaultHelp: '1', own: { flag: '--accumulate <k>' } }),
  opt('bn', oneOf(['none', 'reinsert', 'fresh'] as const), {
    flag: '--finetune-bn <mode>', help: 'none or reinsert (BatchNorm after convs while fine-tuning, scale/bias from the original model\'s statistics, folded back)',
    defaultHelp: 'after a prune step, reinsert where the exporter folded BatchNorm into the convs (detected and reported); else none',
    own: { flag: '--bn <mode>', help: 'none, reinsert (BN after convs for training, folded back) or fresh (from scratch)', defaultHelp: 'reinsert where the exporter folded BatchNorm into the convs and the original model is given (--teacher or --bn-reference; detected and reported); else none' },
  }),
  dflt('reinit', booleanType, false, { help: 're-initialise all weights (train from scratch)', own: { flag: '--reinit' } }),
  dflt('seed', count, 0, { help: 'seed for shuffling and augmentation', own: { flag: '--seed <n>' } }),
  // Its own flag under prune: there --threads is the latency measurements' (the deployment's thread count), and
  // fine-tuning at that count (often 1) would leave the other cores idle.
  opt('threads', positiveInt, { flag: '--finetune-threads <n>', help: 'fine-tuning: onnxruntime intra-op threads, shared out over the replicas', defaultHelp: 'every core', own: { flag: '--threads <n>', help: 'onnxruntime intra-op threads, shared out over the replicas' } }),
  opt('checkpoint', stringType, {
    help: 'write a checkpoint (.onnx with optimizer state) after every epoch and when interrupted',
    own: { flag: '--checkpoint <path>', help: 'write a checkpoint (.onnx with optimizer state) after every epoch and when interrupted; without it, Ctrl-C (SIGINT) or SIGTERM still writes one, to OUT.ckpt.onnx beside -o OUT.onnx' },
  }),
  opt('resume', stringType, {
    help: 'continue from a checkpoint, mid-epoch where it was interrupted (same data, batch and seed)',
    own: { flag: '--resume <path>', help: 'continue from a checkpoint, mid-epoch where it was interrupted (same data, batch and seed); may be the --checkpoint file. Ctrl-C (or SIGTERM) stops at the next step, writes the checkpoint, prints the command with this flag and exits with 130 (SIGTERM: 143); a second one aborts at once' },
  }),
  opt('iterative', scheduleType, { help: 'prune while fine-tuning, `epochs` per pruning step: { kind: gmp | lottery, sparsity, steps?, rewindEpoch? } or { kind: macs, target, steps? }' }),
] as const;

export const QUANTIZE_MODES = ['int8', 'dynamic', 'fp16', 'int4'] as const;

const int8 = { key: 'mode', values: ['int8'] } as const;
const BLOCK_SIZES = [16, 32, 64, 128];
const blockSizeType: OptionType<number> = {
  describe: `one of ${BLOCK_SIZES.join(', ')}`,
  fromJson: (v) => (typeof v === 'number' && BLOCK_SIZES.includes(v) ? v : undefined),
  fromCli: (v) => (typeof v === 'string' && BLOCK_SIZES.includes(Number(v)) ? Number(v) : undefined),
};
const int8OrDynamic = { key: 'mode', values: ['int8', 'dynamic'] } as const;

export const QUANTIZE_OPTIONS = [
  req('mode', oneOf(QUANTIZE_MODES), {
    flag: '--quantize <mode>', help: `quantize as the last step: ${QUANTIZE_MODES.join(' | ')}`,
    own: { flag: '--mode <mode>', help: 'int8 (static QDQ, default) | dynamic | fp16 | int4' },
  }),
  opt('calib', calibType, { flag: '--calib <spec>', help: 'calibration data set for int8 (or "random")', onlyWith: int8, own: { help: 'calibration data set for int8 (same specs as --data), or "random"' } }),
  dflt('calibSize', positiveInt, 256, { flag: '--calib-size <n>', help: 'calibration samples for int8', onlyWith: int8, own: { help: 'calibration samples' } }),
  dflt('calibrator', oneOf(['minmax', 'percentile', 'entropy'] as const), 'minmax', { flag: '--calibrator <c>', help: 'int8 calibrator: minmax | percentile | entropy', onlyWith: int8, own: { help: 'minmax | percentile | entropy' } }),
  opt('percentile', numberType({ min: 50, max: 100 }), { help: 'percentile kept by the percentile calibrator', defaultHelp: '99.99', onlyWith: int8, own: { flag: '--percentile <p>', help: 'percentile kept by --calibrator percentile' } }),
  opt('exclude', regexType, { flag: '--quant-exclude <regex>', help: 'keep nodes whose name matches in float', own: { flag: '--exclude <regex>' } }),
  opt('autoExclude', positiveInt, { help: 'keep the N nodes most sensitive to quantization in float (measured per layer)', onlyWith: int8, own: { flag: '--auto-exclude <n>' } }),
  dflt('perTensor', booleanType, false, { help: 'one weight scale per tensor instead of per output channel', onlyWith: int8OrDynamic, own: { flag: '--per-tensor' } }),
  opt('reduceRange', booleanType, {
    help: 'int8/dynamic: 7-bit weights (default with uint8 activations: safe on x86 CPUs without VNNI); false: 8-bit weights, correct only on x86 CPUs with VNNI and on ARM',
    onlyWith: int8OrDynamic,
    own: {
      switches: {
        '--reduce-range': { value: true, help: 'int8/dynamic: 7-bit weights (default with uint8 activations; safe on x86 CPUs without VNNI)' },
        '--no-reduce-range': { value: false, help: 'int8/dynamic: 8-bit weights, correct only on x86 CPUs with VNNI and on ARM (other x86 CPUs saturate int16 sums: wrong outputs)' },
      },
    },
  }),
  dflt('target', oneOf(['ort', 'trt'] as const), 'ort', {
    help: 'ort (uint8 activations, int8 weights, int32 bias: what onnxruntime fuses) | trt (TensorRT explicit quantization: symmetric int8, Q/DQ on float weights, 2:4 report)',
    onlyWith: int8, own: { flag: '--target <t>' },
  }),
  dflt('blockSize', blockSizeType, 32, { help: 'int4 block size: 16, 32, 64 or 128', onlyWith: { key: 'mode', values: ['int4'] }, own: { flag: '--block-size <n>' } }),
  dflt('ioFp16', booleanType, false, { help: 'fp16: make the graph inputs and outputs float16 too', onlyWith: { key: 'mode', values: ['fp16'] }, own: { flag: '--io-fp16' } }),
] as const;

export type UnstructuredStep = { kind: 'prune'; mode: 'unstructured' } & Given<typeof UNSTRUCTURED_OPTIONS>;
export type NMStep = { kind: 'prune'; mode: 'nm' } & Given<typeof NM_OPTIONS>;
export type StructuredStep = { kind: 'prune'; mode: 'structured' } & Given<typeof STRUCTURED_OPTIONS>;
export type PruneStep = UnstructuredStep | NMStep | StructuredStep;
export type RepairStep = { kind: 'repair' } & Given<typeof REPAIR_OPTIONS>;
export type ScoreStep = { kind: 'score' } & Given<typeof SCORE_OPTIONS>;
export type FinetuneStep = { kind: 'finetune' } & Given<typeof FINETUNE_OPTIONS>;
export type QuantizeStep = { kind: 'quantize' } & Given<typeof QUANTIZE_OPTIONS>;
export type ReportStep = { kind: 'report' } & Given<typeof REPORT_OPTIONS>;
export type Step = PruneStep | RepairStep | ScoreStep | FinetuneStep | QuantizeStep | ReportStep;
export type StepKind = Step['kind'];
export type PruneMode = PruneStep['mode'];

export const STEP_KINDS: readonly StepKind[] = ['prune', 'repair', 'score', 'finetune', 'quantize', 'report'];
export const PRUNE_MODES: readonly PruneMode[] = ['unstructured', 'nm', 'structured'];

/** The options of a step kind (of a prune mode). */
export function optionsOf(kind: StepKind, mode?: PruneMode): readonly OptionDef[] {
  switch (kind) {
    case 'prune': return mode === 'structured' ? STRUCTURED_OPTIONS : mode === 'nm' ? NM_OPTIONS : UNSTRUCTURED_OPTIONS;
    case 'repair': return REPAIR_OPTIONS;
    case 'score': return SCORE_OPTIONS;
    case 'finetune': return FINETUNE_OPTIONS;
    case 'quantize': return QUANTIZE_OPTIONS;
    case 'report': return REPORT_OPTIONS;
  }
}

/** Which step follows which: a step may follow steps of a lower rank only (score goes anywhere, report last). */
export const STEP_RANK: Readonly<Record<Exclude<StepKind, 'score' | 'report'>, number>> = { prune: 0, repair: 1, finetune: 2, quantize: 3 };
