/**
 * `shears prune MODEL -o OUT (--sparsity S | --pattern N:M | --structured TARGET) [--repair ...] [--finetune-epochs
 * ...] [--quantize ...]`: the flags become a recipe (pipeline/recipe.ts), the library runs it over the model in
 * memory (pipeline/run.ts), and the result is saved once. `--save-recipe` writes the recipe for `shears run`.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { preprocessFromFlags } from '../data/preprocess.js';
import { ShearsError } from '../errors.js';
import { writeFileAtomic } from '../fs/files.js';
import { describeOptionError, OptionError, parseOption } from '../pipeline/options.js';
import { checkSteps, formatRecipe, type Recipe } from '../pipeline/recipe.js';
import type { Step } from '../pipeline/steps.js';
import type { FinetuneChoices } from '../pipeline/finetune.js';
import { LATENCY_BATCH, TARGET_FLAGS, targetValueType, validateTarget, type StructuredTarget } from '../pipeline/target.js';
import { addFeedOptions, addFloat32Option, addPreprocessOptions, feedsOf, preprocessFlags, withFloat32 } from './common.js';
import { readModel, reportHtml, runFromCli, saveAndReport } from './pipeline.js';
import { hasLazyWeights, runStreamed, streamPlan } from './stream.js';
import { CONTEXTS, GivenFlags, checkAllUsed, flagOfKey, longFlag, optionsFromFlags, registerStepFlags } from './step-flags.js';

export function registerPrune(program: Command): void {
  const cmd = program
    .command('prune')
    .description('Prune a model (unstructured, N:M or structured), then optionally repair, fine-tune and quantize it, in memory; the result is written once')
    .argument('<model>', 'path to an .onnx file')
    .option('-o, --output <path>', 'where to write the pruned model (required)')
    .option('--json', 'print one JSON report on stdout')
    .option('--save-plan <file>', '[structured] write the pruning plan (JSON)')
    .option('--save-recipe <file>', 'write what this command ran as a recipe (.json, .yaml) for `shears run`')
    .option('--report-html <file>', 'end with a report step (the dense and the final model measured side by side, scored on --data when given) and write it as a self-contained HTML page with plots');
  registerStepFlags(cmd);
  addFloat32Option(cmd);
  addFeedOptions(addPreprocessOptions(cmd));
  cmd.action(async (modelPath: string, o: { output: string; json?: boolean; savePlan?: string; saveRecipe?: string; reportHtml?: string }, command: Command) => {
    const recipe = withFloat32(recipeFromFlags(command), command);
    const html = reportHtml(recipe, o.reportHtml);
    if (o.savePlan !== undefined && recipe.steps[0]?.kind === 'prune' && recipe.steps[0].mode !== 'structured') throw new ShearsError('--save-plan needs --structured');
    const loaded = readModel(modelPath);
    // a model with external data, pruned by Wanda/SparseGPT alone: layer by layer, never held whole
    const streamed = streamPlan(loaded.model, recipe);
    if (streamed) {
      await runStreamed(loaded.model, modelPath, o.output, streamed, !!o.json);
      if (o.saveRecipe !== undefined) writeFileAtomic(o.saveRecipe, formatRecipe(recipe, o.saveRecipe));
      return;
    }
    if (hasLazyWeights(loaded.model)) process.stderr.write('shears: note: the model is held in memory (streamed pruning takes --sparsity or --pattern with --method wanda|sparsegpt and --calib, and nothing else)\n');
    const run = { ...loaded, modelPath, recipe, output: o.output, name: flagOfKey };
    const result = await runFromCli(run);
    saveAndReport(result, run, !!o.json);
    html?.(result);
    if (o.savePlan !== undefined && result.plan) writeFileAtomic(o.savePlan, `${JSON.stringify(result.plan, null, 1)}\n`);
    if (o.saveRecipe !== undefined) writeFileAtomic(o.saveRecipe, formatRecipe(withChoices(recipe, result.report.finetune?.choices), o.saveRecipe));
  });
}

/**
 * The recipe with the finetune step's distillation and BatchNorm as they ran (chosen by default from the run and
 * the model: see finetuneChoices), so that `shears run` replays the same choices under other defaults.
 */
function withChoices(recipe: Recipe, choices: FinetuneChoices | undefined): Recipe {
  if (!choices) return recipe;
  return { ...recipe, steps: recipe.steps.map((s) => (s.kind === 'finetune' ? { ...s, kd: choices.kd, bn: choices.bn } : s)) };
}

function readPlan(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new ShearsError(`cannot read plan '${path}'`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ShearsError(`plan '${path}' is not JSON: ${(e as Error).message}`);
  }
}

/** The structured target the flags give (undefined: none given). */
function targetFromFlags(flags: GivenFlags): StructuredTarget | undefined {
  const given = TARGET_FLAGS.filter((t) => flags.has(longFlag(t.flag)));
  if (given.length > 1) throw new ShearsError(`give only one of ${TARGET_FLAGS.map((t) => longFlag(t.flag)).join(', ')}`);
  const t = given[0];
  if (!t) return undefined;
  const flag = longFlag(t.flag);
  if (t.kind === 'plan') {
    const path = flags.take(flag) as string;
    try {
      return validateTarget({ kind: 'plan', plan: readPlan(path) }, 'plan');
    } catch (e) {
      if (e instanceof OptionError) throw new ShearsError(`--plan '${path}' ${e.problem}`);
      throw e;
    }
  }
  const value = parseOption(flag, targetValueType(t.kind), flags.take(flag), 'cli');
  const batch = longFlag(LATENCY_BATCH.flag);
  if (t.kind === 'latency' && flags.has(batch)) return { kind: 'latency', value, batch: parseOption(batch, LATENCY_BATCH.type, flags.take(batch), 'cli') };
  return { kind: t.kind, value };
}

/** The recipe `shears prune` runs for the flags given: prune, then repair, fine-tune and quantize when asked. */
function recipeFromFlags(cmd: Command): Recipe {
  const flags = new GivenFlags(cmd);
  const structured = flags.has('--structured');
  const sparsity = flags.has('--sparsity');
  const pattern = flags.has('--pattern');
  if (structured && (sparsity || pattern)) throw new ShearsError('--structured removes channels: it does not take --sparsity or --pattern');
  if (!structured && !sparsity && !pattern) throw new ShearsError('give --sparsity S or --pattern N:M');
  if (sparsity && pattern) throw new ShearsError('give either --sparsity or --pattern, not both');
  if (pattern && (flags.has('--per-layer') || flags.has('--lamp'))) throw new ShearsError('--pattern works per group: it does not take --per-layer or --lamp');
  const mode = structured ? 'structured' : pattern ? 'nm' : 'unstructured';
  const ctx = (step: string, m?: string) => CONTEXTS.find((c) => c.step === step && c.mode === m)!;
  if (structured) flags.use('--structured');
  const prune = optionsFromFlags(flags, ctx('prune', mode), { kind: 'prune', mode });
  if (structured) {
    const target = targetFromFlags(flags);
    if (target) prune['target'] = target;
    else if (prune['removeBlocks'] === undefined) throw new ShearsError('give one of --ratio, --target-macs, --target-params, --target-latency, --plan or --remove-blocks');
  }
  const steps = [prune];
  if (flags.has('--repair') || flags.has('--data')) {
    const repair = optionsFromFlags(flags, ctx('repair'), { kind: 'repair' });
    repair['methods'] ??= ['none'];
    steps.push(repair);
  }
  if (flags.has('--finetune-epochs') || flags.has('--finetune-steps')) {
    // (--finetune-steps alone: language-model fine-tuning on token data, where epochs do not apply)
    const finetune = optionsFromFlags(flags, ctx('finetune'), flags.has('--finetune-epochs') ? { kind: 'finetune' } : { kind: 'finetune', epochs: 1 });
    if (finetune['train'] === undefined) throw new ShearsError(`${flags.has('--finetune-epochs') ? '--finetune-epochs' : '--finetune-steps'} needs --train SPEC (training data)`);
    // Validation data: --val, else the evaluation data.
    if (finetune['val'] === undefined && flags.has('--data')) finetune['val'] = cmd.getOptionValue('data');
    steps.push(finetune);
  }
  if (flags.has('--quantize')) steps.push(optionsFromFlags(flags, ctx('quantize'), { kind: 'quantize' }));
  // --report-html: a report step last, scored on the evaluation data when given.
  if (cmd.getOptionValue('reportHtml') !== undefined) steps.push({ kind: 'report', ...(flags.has('--data') ? { data: cmd.getOptionValue('data') as string } : {}) });
  checkAllUsed(flags);
  const preprocess = preprocessFromFlags(preprocessFlags(cmd.opts()));
  const recipe: Recipe = { format: 'shears.recipe', version: 1, ...(Object.keys(preprocess).length ? { preprocess } : {}), ...feedsOf(cmd), steps: steps as unknown as Step[] };
  try {
    checkSteps(recipe.steps);
  } catch (e) {
    if (e instanceof OptionError) throw new ShearsError(describeOptionError(e, flagOfKey));
    throw e;
  }
  return recipe;
}
