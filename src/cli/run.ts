/**
 * `shears run RECIPE MODEL -o OUT [--data ROLE=SPEC ...] [--json]`: runs a recipe file (JSON or YAML, see
 * pipeline/recipe.ts), such as one `shears prune --save-recipe` wrote, on a model; the result is written once.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { ShearsError } from '../errors.js';
import { loadModel } from '../onnx/io.js';
import { describeOptionError, type OptionError } from '../pipeline/options.js';
import { parseRecipe, StepError } from '../pipeline/recipe.js';
import { readModel, reportHtml, runFromCli, saveAndReport } from './pipeline.js';
import { addFeedOptions, addFloat32Option, withFloat32 } from './common.js';
import { feedsFromArgs, feedsFromRecipe, feedsToRecipe, mergeFeeds } from '../data/feeds.js';

/** `--data calib=SPEC` values as role bindings. */
function bindings(specs: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const s of specs ?? []) {
    const eq = s.indexOf('=');
    const role = s.slice(0, eq).replace(/^\$/, '');
    if (eq <= 0 || !/^[A-Za-z_][\w-]*$/.test(role) || eq === s.length - 1) throw new ShearsError(`--data '${s}': expected ROLE=SPEC, e.g. calib=data/fashion-mnist-demo@train`);
    out[role] = s.slice(eq + 1);
  }
  return out;
}

export function registerRun(program: Command): void {
  const cmd = program
    .command('run')
    .description('Run a recipe (a JSON or YAML list of steps: prune, repair, score, finetune, quantize, report) on a model, in memory; the result is written once')
    .argument('<recipe>', 'the recipe file (.json, .yaml or .yml)')
    .argument('<model>', 'path to an .onnx file')
    .option('-o, --output <path>', 'where to write the resulting model (required)')
    .option('--data <role=spec...>', 'the data set for a role the recipe names ($calib, $train, $val, $data, ...), e.g. calib=data/fashion-mnist-demo@train (repeatable)')
    .option('--dense <onnx>', 'the original model that repair, distillation and scores compare with (default: MODEL itself)')
    .option('--report-html <file>', 'write the evidence of the recipe\'s report step (its last step) as a self-contained HTML page with plots')
    .option('--json', 'print one JSON report on stdout');
  addFeedOptions(addFloat32Option(cmd))
    .action(async (recipePath: string, modelPath: string, o: { output: string; data?: string[]; dense?: string; reportHtml?: string; json?: boolean; feed?: string[]; carry?: string[] }, command: Command) => {
      let text: string;
      try {
        text = readFileSync(recipePath, 'utf8');
      } catch {
        throw new ShearsError(`cannot read recipe '${recipePath}'`);
      }
      const parsed = parseRecipe(text, recipePath);
      // --feed/--carry over the recipe's feeds and carry (by input name)
      const { feeds: _f, carry: _c, ...rest } = parsed;
      const recipe = withFloat32({ ...rest, ...feedsToRecipe(mergeFeeds(feedsFromRecipe(parsed.feeds, parsed.carry, recipePath), feedsFromArgs(o.feed, o.carry))) }, command);
      const html = reportHtml(recipe, o.reportHtml);
      const run = {
        ...readModel(modelPath), modelPath, recipe, output: o.output,
        name: (key: string) => key,
        locate: (e: OptionError) => {
          if (!(e instanceof StepError)) return `${recipePath}: ${e.message}`;
          const own = (k: string) => (k.startsWith(`${e.kind}.`) ? k.slice(e.kind.length + 1) : k);
          const hint = /is the role \$/.test(e.problem) ? ' (bind it with --data ROLE=SPEC)' : '';
          return `${recipePath}: step ${e.index + 1} (${e.kind}): ${describeOptionError(e, own)}${hint}`;
        },
        data: bindings(o.data),
        ...(o.dense !== undefined ? { reference: loadModel(o.dense) } : {}),
      };
      const result = await runFromCli(run);
      saveAndReport(result, run, !!o.json);
      html?.(result);
    });
}
