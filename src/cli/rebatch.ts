/** `shears rebatch MODEL -o OUT [--json]`: a static-batch export made to take any batch size (checked). */
import type { Command } from 'commander';
import { rebatch } from '../analysis/rebatch.js';
import { loadModel, saveModel } from '../onnx/io.js';

export function registerRebatch(program: Command): void {
  program
    .command('rebatch')
    .description('Give a model exported with a static batch size a dynamic one (Reshape targets copy the batch), checked sample by sample in onnxruntime')
    .argument('<model>', 'path to an .onnx file')
    .requiredOption('-o, --output <path>', 'where to write the rebatched model')
    .option('--json', 'print one JSON object')
    .action(async (path: string, o: { output: string; json?: boolean }) => {
      const r = await rebatch(loadModel(path));
      saveModel(r.model, o.output);
      const inputs = r.model.graph.inputs.filter((i) => !r.model.graph.initializers.has(i.name)).map((i) => ({ name: i.name, shape: i.type?.shape ?? null }));
      if (o.json) process.stdout.write(`${JSON.stringify({ model: path, output: o.output, from: r.from, reshapes: r.reshapes, maxRelDiff: r.maxRelDiff, inputs })}\n`);
      else {
        process.stdout.write(`batch ${r.from} -> any: ${r.reshapes.length} Reshape target(s) now copy the batch dimension; batched run equals per-sample runs (max relative difference ${r.maxRelDiff.toExponential(2)})\n` +
          `inputs: ${inputs.map((i) => `${i.name} [${(i.shape ?? []).join(', ')}]`).join(', ')}\nwrote ${o.output}\n`);
      }
    });
}
