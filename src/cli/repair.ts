/**
 * `shears repair PRUNED --dense DENSE --calib SPEC -o OUT --method stats|lsq|obs|wanda`: a pipeline of one repair
 * step, with the dense model as its reference. The flags are generated from the repair step's options
 * (pipeline/steps.ts), as those of `shears prune --repair`.
 */
import type { Command } from 'commander';
import { preprocessFromFlags } from '../data/preprocess.js';
import { ShearsError } from '../errors.js';
import { loadModel } from '../onnx/io.js';
import { saveResult } from './room.js';
import { describeOptionError, OptionError, parseOption } from '../pipeline/options.js';
import { checkSteps, type Recipe } from '../pipeline/recipe.js';
import { REPAIR_OPTIONS, type RepairStep } from '../pipeline/steps.js';
import { REPAIR_METHODS } from '../repair/repair.js';
import { addFeedOptions, addFloat32Option, addPreprocessOptions, feedsOf, preprocessFlags, withFloat32 } from './common.js';
import { formatStage, readModel, runFromCli } from './pipeline.js';
import { CONTEXTS, GivenFlags, checkAllUsed, flagOfKey, optionsFromFlags } from './step-flags.js';

const methods = REPAIR_OPTIONS.find((d) => d.key === 'methods')!;
const pattern = REPAIR_OPTIONS.find((d) => d.key === 'pattern')!;

export function registerRepair(program: Command): void {
  const cmd = program
    .command('repair')
    .description('Training-free accuracy repair of a pruned model against its dense original (layers matched by node name)')
    .argument('<pruned>', 'the pruned .onnx model')
    .requiredOption('--dense <onnx>', 'the dense (original) model')
    .option('-o, --output <path>', 'where to write the repaired model (required)')
    .option('--method <methods>', `${REPAIR_METHODS.join(' | ')}, or a comma list applied in order`, 'lsq')
    .option('--pattern <N:M>', '[obs, wanda] choose N:M masks (keep N of every M input channels)')
    .option('--json', 'print one JSON report on stdout');
  for (const d of REPAIR_OPTIONS) if (d.flag && d !== methods) cmd.option(d.flag, `${d.help}${d.presence === 'default' ? ` (default ${String(d.default)})` : ''}`);
  addFloat32Option(cmd);
  addFeedOptions(addPreprocessOptions(cmd)).action(async (prunedPath: string, o: { dense: string; output: string; method: string; pattern?: string; json?: boolean }, command: Command) => {
    const flags = new GivenFlags(command);
    const step = optionsFromFlags(flags, CONTEXTS.find((c) => c.step === 'repair')!, { kind: 'repair' });
    step['methods'] = parseOption('--method', methods.type, o.method, 'cli');
    if (o.pattern !== undefined) step['pattern'] = parseOption('--pattern', pattern.type, o.pattern, 'cli');
    checkAllUsed(flags);
    const preprocess = preprocessFromFlags(preprocessFlags(command.opts()));
    const recipe: Recipe = withFloat32<Recipe>({ format: 'shears.recipe', version: 1, ...(Object.keys(preprocess).length ? { preprocess } : {}), ...feedsOf(command), steps: [step as unknown as RepairStep] }, command);
    const name = (key: string) => (key === 'repair.methods' ? '--method' : key === 'repair.pattern' ? '--pattern' : flagOfKey(key));
    try {
      checkSteps(recipe.steps);
    } catch (e) {
      if (e instanceof OptionError) throw new ShearsError(describeOptionError(e, name));
      throw e;
    }
    const run = { ...readModel(prunedPath), modelPath: prunedPath, recipe, output: o.output, name, reference: loadModel(o.dense) };
    const result = await runFromCli(run);
    saveResult(result.model, o.output);
    const r = result.report.repair!;
    const out = { model: prunedPath, dense: o.dense, output: o.output, ...r };
    process.stdout.write(o.json ? `${JSON.stringify(out)}\n` : `${formatStage(r)}\nwritten: ${o.output}\n`);
  });
}
