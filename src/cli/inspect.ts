import { statSync } from 'node:fs';
import type { Command } from 'commander';
import { foldModel } from '../analysis/fold.js';
import { parseInputValues } from '../analysis/input-shapes.js';
import { assertRunnableOps, inspectModel, type InspectReport } from '../analysis/inspect.js';
import { ShearsError } from '../errors.js';
import type { Dim } from '../ir/graph.js';
import { loadModel } from '../onnx/io.js';
import { table } from '../report/format.js';
import { bytes, human, percent } from '../units.js';
import { parseInputShapes, staticInputShapes } from './args.js';

interface InspectOptions {
  inputShape?: string[];
  inputValue?: string[];
  json?: boolean;
  all?: boolean;
  allowUnknownOps?: boolean;
}

export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description('per-layer parameters, MACs, sizes and sparsity of an ONNX model')
    .argument('<model>', 'path to an .onnx file')
    .option('--input-shape <spec...>', 'static shape of an input, NAME=1x3x224x224 (dynamic dims default to 1)')
    .option('--input-value <spec...>', 'pin an input to a value, NAME=16000 or NAME=1,2,3: what depends only on it folds (an If on it takes its branch)')
    .option('--all', 'list every node, not only those with parameters or MACs')
    .option('--allow-unknown-ops', 'inspect models with ops of custom domains (their cost counts as 0)')
    .option('--json', 'print one JSON object instead of tables')
    .action(async (path: string, opts: InspectOptions) => {
      const model = loadModel(path);
      if (!opts.allowUnknownOps) assertRunnableOps(model);
      const shapes = staticInputShapes(model, parseInputShapes(opts.inputShape, model));
      const inputValues = parseInputValues(opts.inputValue, model, (problem) => new ShearsError(`--input-value ${problem}`));
      // Constant subgraphs (shape arithmetic without TS rules, If on a constant condition) fold first, so the
      // counts cover what actually runs for these shapes and values.
      const folded = await foldModel(model, { inputShapes: shapes, inputValues });
      const report = inspectModel(model, shapes, new Set(folded.created));
      report.folding = { inlined: folded.inlined, runtimeFolded: folded.runtimeFolded, ...(folded.runtimeFailure ? { runtimeFailure: folded.runtimeFailure } : {}) };
      const fileBytes = statSync(path).size;
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ file: path, fileBytes, ...report })}\n`);
      } else {
        process.stdout.write(`${formatInspect(path, fileBytes, report, opts.all ?? false)}\n`);
      }
    });
}

const shapeStr = (s: Dim[] | null) => (s ? `[${s.map((d) => d ?? '?').join(', ')}]` : '?');

export function formatInspect(path: string, fileBytes: number, r: InspectReport, all: boolean): string {
  const lines: string[] = [];
  lines.push(`model      ${path} (${bytes(fileBytes)})`);
  lines.push(`producer   ${r.producer || '(none)'}, IR ${r.irVersion}, opsets ${Object.entries(r.opsets).map(([d, v]) => `${d} ${v}`).join(', ')}`);
  for (const i of r.inputs) lines.push(`input      ${i.name}: ${i.dtype} ${shapeStr(i.shape)}${r.analysedInputShapes[i.name] ? ` (analysed as ${shapeStr(r.analysedInputShapes[i.name]!)})` : ''}`);
  for (const o of r.outputs) lines.push(`output     ${o.name}: ${o.dtype} ${shapeStr(o.shape)}`);
  lines.push(`nodes      ${r.nodes} (${Object.entries(r.opCounts).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ')})`);
  lines.push(`params     ${r.params.toLocaleString('en-US')} (${human(r.params)}), ${bytes(r.weightBytes)} of weights`);
  lines.push(`MACs       ${r.macs.toLocaleString('en-US')} (${human(r.macs)}), other FLOPs ${human(r.flops)}`);
  lines.push(`sparsity   ${percent(r.sparsity, 2)} of parameters are zero (${r.zeroParams.toLocaleString('en-US')}); layer weights ${percent(r.weightSparsity, 2)} (${r.weightZeros.toLocaleString('en-US')} of ${r.weightParams.toLocaleString('en-US')})`);
  lines.push(`activations ${bytes(r.activationBytes)} (sum of all intermediate tensors)`);
  const f = r.folding;
  if (f && (f.inlined || f.runtimeFolded)) lines.push(`folded     ${f.inlined ? `${f.inlined} If on a constant condition inlined (taken branch only)` : ''}${f.inlined && f.runtimeFolded ? '; ' : ''}${f.runtimeFolded ? `${f.runtimeFolded} constant value(s) computed once in onnxruntime` : ''}`);
  if (f?.runtimeFailure) lines.push(`warning    onnxruntime could not fold the constant subgraph (${f.runtimeFailure}): counts cover what shears folds itself`);
  for (const s of r.subgraphs) lines.push(`subgraph   ${s.scope}: ${s.params.toLocaleString('en-US')} params, ${human(s.macs)} MACs per run`);
  if (r.subgraphs.length) lines.push('           (totals: every subgraph\'s parameters; the MACs of the costlier If branch, of one loop iteration)');
  if (r.unknownOps.length) {
    const kinds = [...new Set(r.unknownOps.map((u) => u.opType))];
    lines.push(`warning    no rules for ${r.unknownOps.length} node(s) of op ${kinds.join(', ')}: their cost counts as 0`);
  }
  const rows = all ? r.layers : r.layers.filter((l) => l.params > 0 || l.macs > 0);
  lines.push('');
  lines.push(table(rows, [
    { header: 'layer', value: (l) => l.name },
    { header: 'op', value: (l) => l.opType },
    { header: 'output', value: (l) => shapeStr(l.outputShape) },
    { header: 'params', value: (l) => l.params.toLocaleString('en-US'), align: 'right' },
    { header: 'MACs', value: (l) => human(l.macs), align: 'right' },
    { header: 'share', value: (l) => percent(l.macsShare), align: 'right' },
    { header: 'sparsity', value: (l) => (l.params ? percent(l.sparsity) : '-'), align: 'right' },
  ]));
  return lines.join('\n');
}
