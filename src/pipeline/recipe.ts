/**
 * Recipes: a pipeline as a plain JSON or YAML file, `{ format: 'shears.recipe', version: 1, preprocess?, steps }`.
 * Validated against the step option tables (steps.ts) with errors that name the file, the step (number and kind)
 * and the key: unknown keys, values of the wrong type, missing keys, combinations that do not go together and
 * steps in the wrong order.
 */
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { ShearsError } from '../errors.js';
import { validatePreprocess, type PreprocessSpec } from '../data/preprocess.js';
import { feedsFromRecipe, feedsToRecipe } from '../data/feeds.js';
import { OptionError, defaultOf, describeOptionError, parseOption } from './options.js';
import { PRUNE_MODES, STEP_KINDS, STEP_RANK, optionsOf, type PruneMode, type Step, type StepKind } from './steps.js';

export interface Recipe {
  format: 'shears.recipe';
  version: 1;
  /** How images become model inputs; merged over the model's stored preprocessing (fields given here win). */
  preprocess?: PreprocessSpec;
  /** Upcast a float16 model to float32 for the work and cast the result back (see pipeline/float32.ts). */
  float32?: boolean;
  /**
   * Feeds of the model's inputs that the data sets do not give (multi-input and stateful models, data/feeds.ts):
   * `{ sr: 'const:16000', h: 'zeros' }`. The data sets feed the one input left.
   */
  feeds?: Record<string, string>;
  /** States carried from call to call: `{ hn: h }` feeds output hn of one call as input h of the next. */
  carry?: Record<string, string>;
  steps: Step[];
}

/** An OptionError about the step at `index` of a recipe. */
export class StepError extends OptionError {
  constructor(readonly index: number, readonly kind: string, cause: OptionError) {
    super(cause.key, cause.problem);
    this.name = 'StepError';
  }
}

function stepKey(kind: string, key: string): string {
  return `${kind}.${key}`;
}

/** Checks one step's keys and values; returns a clean copy. Throws an OptionError (keys as `kind.key`). */
function validateStep(v: unknown): Step {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new OptionError('step', `must be an object with a kind (${STEP_KINDS.join(', ')})`);
  const o = v as Record<string, unknown>;
  const kind = o['kind'];
  if (typeof kind !== 'string' || !(STEP_KINDS as readonly string[]).includes(kind)) {
    throw new OptionError('step.kind', `must be one of ${STEP_KINDS.join(', ')}, not ${JSON.stringify(kind)}`);
  }
  const k = kind as StepKind;
  let mode: PruneMode | undefined;
  if (k === 'prune') {
    if (typeof o['mode'] !== 'string' || !(PRUNE_MODES as readonly string[]).includes(o['mode'])) {
      throw new OptionError('prune.mode', `must be one of ${PRUNE_MODES.join(', ')}, not ${JSON.stringify(o['mode'])}`);
    }
    mode = o['mode'] as PruneMode;
  }
  const defs = optionsOf(k, mode);
  const out: Record<string, unknown> = k === 'prune' ? { kind, mode } : { kind };
  for (const [key, value] of Object.entries(o)) {
    if (key === 'kind' || (key === 'mode' && k === 'prune')) continue;
    const def = defs.find((d) => d.key === key);
    if (!def) {
      throw new OptionError(stepKey(k, key), `is not an option of ${k}${mode ? ` (mode ${mode})` : ''} (options: ${defs.map((d) => d.key).join(', ')})`);
    }
    out[key] = parseOption(stepKey(k, key), def.type, value, 'json');
  }
  for (const d of defs) if (d.presence === 'required' && out[d.key] === undefined) throw new OptionError(stepKey(k, d.key), 'is missing');
  return out as unknown as Step;
}

/** Options that only go together with others, checked on typed steps (from a recipe or from flags). */
function checkStep(s: Step): void {
  if (s.kind === 'prune' && s.mode === 'structured') {
    if (s.target === undefined && s.removeBlocks === undefined) throw new OptionError('prune.target', 'is missing: give a target or {prune.removeBlocks}');
    if (s.importance === 'taylor' && s.taylorData === undefined && s.target?.kind !== 'plan') throw new OptionError('prune.importance', 'taylor needs labelled data: {prune.taylorData}');
    if (s.importance === 'activation' && (s.calib === undefined || s.calib === 'random') && s.target?.kind !== 'plan') {
      throw new OptionError('prune.importance', `activation needs calibration data${s.calib === 'random' ? ' (a data set, not random)' : ''}: {prune.calib}`);
    }
    if (s.target?.kind === 'plan' && s.removeBlocks !== undefined) throw new OptionError('prune.removeBlocks', 'does not go with a plan (the plan names the removed blocks)');
    if (s.target?.kind !== 'latency') {
      // the latency table and the landing check serve a latency target alone
      if (s.latencyCache !== undefined) throw new OptionError('prune.latencyCache', 'applies to a latency target only (--target-latency F; in a recipe, target {kind: latency})');
      if (s.landingCheck === false) throw new OptionError('prune.landingCheck', 'applies to a latency target only (--target-latency F; in a recipe, target {kind: latency})');
    }
  }
  if (s.kind === 'prune' && s.mode !== 'structured' && (s.method === 'wanda' || s.method === 'sparsegpt')) {
    if (s.calib === undefined) throw new OptionError('prune.method', `${s.method} needs calibration data: {prune.calib}`);
    if (s.scope !== undefined && s.scope !== 'layer' && !(s.mode === 'nm' && s.scope === 'global')) throw new OptionError('prune.scope', `${s.scope} does not apply to ${s.method}, which prunes each layer by itself (the same fraction of every layer, or per block with {prune.owl})`);
    if ('layerSparsity' in s && s.layerSparsity !== undefined) throw new OptionError('prune.layerSparsity', `does not apply to ${s.method} (use {prune.owl} for per-block amounts)`);
  }
  if (s.kind === 'repair' && s.methods.some((m) => m !== 'none') && s.calib === undefined) throw new OptionError('repair.methods', 'needs calibration data: {repair.calib}');
  if (s.kind === 'finetune' && s.iterative && (s.checkpoint !== undefined || s.resume !== undefined)) {
    throw new OptionError(`finetune.${s.checkpoint !== undefined ? 'checkpoint' : 'resume'}`, 'is not supported with iterative pruning ({finetune.iterative})');
  }
  if (s.kind === 'quantize' && s.mode === 'int8' && s.calib === undefined) throw new OptionError('quantize.mode', 'int8 needs calibration data: {quantize.calib}');
  const given = s as unknown as Record<string, unknown>;
  const defs = optionsOf(s.kind, s.kind === 'prune' ? s.mode : undefined);
  for (const d of defs) {
    if (!d.onlyWith || given[d.key] === undefined || d.onlyWith.values.includes(given[d.onlyWith.key] ?? defaultOf(defs, d.onlyWith.key))) continue;
    throw new OptionError(`${s.kind}.${d.key}`, `applies to {${s.kind}.${d.onlyWith.key}} ${d.onlyWith.values.join(' or ')} only`);
  }
}

/**
 * Checks a recipe's steps for combinations and order (the step types cannot say these): throws a StepError
 * naming the step and the option key. A report step comes last (once): it reports on the final model.
 */
export function checkSteps(steps: readonly Step[]): void {
  let last: { kind: Exclude<StepKind, 'score' | 'report'>; index: number } | undefined;
  steps.forEach((s, i) => {
    try {
      checkStep(s);
    } catch (e) {
      throw e instanceof OptionError ? new StepError(i, s.kind, e) : e;
    }
    if (s.kind === 'report' && i !== steps.length - 1) throw new StepError(i, s.kind, new OptionError('report', 'must be the last step (it reports on the final model)'));
    if (s.kind === 'score' || s.kind === 'report') return;
    if (last && STEP_RANK[s.kind] <= STEP_RANK[last.kind]) {
      const problem = s.kind === last.kind ? `comes twice (step ${last.index + 1} is ${s.kind} too)` : `must come before ${last.kind} (step ${last.index + 1}): the order is prune, repair, finetune, quantize`;
      throw new StepError(i, s.kind, new OptionError(s.kind, problem));
    }
    last = { kind: s.kind, index: i };
  });
}

const TOP_KEYS = ['format', 'version', 'preprocess', 'float32', 'feeds', 'carry', 'steps'];

/**
 * A recipe from its parsed JSON/YAML value; `name` (the file) starts every error message, followed by the step
 * (`step 2 (repair)`) and the key.
 */
export function validateRecipe(v: unknown, name = 'recipe'): Recipe {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ShearsError(`${name}: a recipe is an object { format: shears.recipe, version: 1, steps: [...] }`);
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!TOP_KEYS.includes(k)) throw new ShearsError(`${name}: unknown key '${k}' (keys: ${TOP_KEYS.join(', ')})`);
  if (o['format'] !== 'shears.recipe') throw new ShearsError(`${name}: format must be shears.recipe, not ${JSON.stringify(o['format'])}`);
  if (o['version'] !== 1) throw new ShearsError(`${name}: version must be 1, not ${JSON.stringify(o['version'])}`);
  if (!Array.isArray(o['steps']) || o['steps'].length === 0) throw new ShearsError(`${name}: steps must be a non-empty list`);
  const recipe: Recipe = { format: 'shears.recipe', version: 1, steps: [] };
  if (o['preprocess'] !== undefined) recipe.preprocess = recipePreprocess(o['preprocess'], `${name}: preprocess`);
  if (o['float32'] !== undefined) {
    if (typeof o['float32'] !== 'boolean') throw new ShearsError(`${name}: float32 must be true or false, not ${JSON.stringify(o['float32'])}`);
    if (o['float32']) recipe.float32 = true;
  }
  if (o['feeds'] !== undefined || o['carry'] !== undefined) Object.assign(recipe, feedsToRecipe(feedsFromRecipe(o['feeds'], o['carry'], name)));
  const located = (index: number, kind: string, e: OptionError) => {
    const own = (k: string) => (k.startsWith(`${kind}.`) ? k.slice(kind.length + 1) : k);
    return new ShearsError(`${name}: step ${index + 1} (${kind}): ${describeOptionError(e, own)}`);
  };
  (o['steps'] as unknown[]).forEach((s, i) => {
    try {
      recipe.steps.push(validateStep(s));
    } catch (e) {
      if (!(e instanceof OptionError)) throw e;
      const kind = typeof s === 'object' && s !== null && typeof (s as { kind?: unknown }).kind === 'string' ? (s as { kind: string }).kind : '?';
      throw located(i, kind, e);
    }
  });
  try {
    checkSteps(recipe.steps);
  } catch (e) {
    if (e instanceof StepError) throw located(e.index, e.kind, e);
    throw e;
  }
  return recipe;
}

/** The preprocessing of a recipe: a preprocess spec, where `scale` may also be a fraction such as '1/255'. */
function recipePreprocess(v: unknown, what: string): PreprocessSpec {
  if (typeof v === 'object' && v !== null && typeof (v as { scale?: unknown }).scale === 'string') {
    const s = (v as { scale: string }).scale;
    const m = /^\s*([\d.]+(?:e[-+]?\d+)?)\s*\/\s*([\d.]+(?:e[-+]?\d+)?)\s*$/i.exec(s);
    const scale = m ? Number(m[1]) / Number(m[2]) : Number.NaN;
    if (!Number.isFinite(scale) || scale === 0) throw new ShearsError(`${what}: scale must be a number or a fraction such as 1/255, not '${s}'`);
    return validatePreprocess({ ...v, scale }, what);
  }
  return validatePreprocess(v, what);
}

/** Parses a recipe file's text: JSON when `name` ends in .json, YAML otherwise (YAML reads JSON too). */
export function parseRecipe(text: string, name: string): Recipe {
  let v: unknown;
  try {
    v = /\.json$/i.test(name) ? JSON.parse(text) : parseYaml(text, { uniqueKeys: true });
  } catch (e) {
    throw new ShearsError(`${name}: not ${/\.json$/i.test(name) ? 'JSON' : 'YAML'}: ${(e as Error).message.split('\n')[0]}`);
  }
  return validateRecipe(v, name);
}

/** A recipe as file text: YAML when `name` ends in .yaml or .yml, JSON otherwise. */
export function formatRecipe(recipe: Recipe, name: string): string {
  return /\.ya?ml$/i.test(name) ? stringifyYaml(recipe) : `${JSON.stringify(recipe, null, 2)}\n`;
}
