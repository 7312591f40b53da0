/**
 * `shears nm-gemm MODEL -o OUT [--pattern N:M] [--all] [--json]`: N:M-sparse MatMuls rewritten as Gemm for
 * TensorRT 8.0-8.2 sparse kernels (quant/nm-gemm.ts), checked in onnxruntime on random inputs.
 */
import type { Command } from 'commander';
import { ShearsError } from '../errors.js';
import { loadModel, saveModel } from '../onnx/io.js';
import { gemmParity, matmulsToGemm } from '../quant/nm-gemm.js';
import { parsePattern } from '../sparsity/nm.js';

export function registerNmGemm(program: Command): void {
  program
    .command('nm-gemm')
    .description('Rewrite N:M-sparse MatMuls (constant [K, N] weights) as Gemm, with Reshapes around 3-D inputs, for TensorRT 8.0-8.2 sparse kernels; checked in onnxruntime')
    .argument('<model>', 'path to an .onnx file')
    .requiredOption('-o, --output <path>', 'where to write the rewritten model')
    .option('--pattern <n:m>', 'sparsity pattern a weight must have along K', '2:4')
    .option('--all', 'rewrite every MatMul with a constant 2-D weight, sparse or not')
    .option('--json', 'print one JSON object')
    .action(async (path: string, o: { output: string; pattern: string; all?: boolean; json?: boolean }) => {
      const model = loadModel(path);
      const pattern = parsePattern(o.pattern);
      const { model: out, report } = matmulsToGemm(model, { pattern, ...(o.all ? { all: true } : {}) });
      if (report.rewritten.length === 0) {
        const why = [...new Set(report.skipped.map((s) => s.reason.replace(/\(.*\)/, '').trim()))].slice(0, 3).join('; ');
        throw new ShearsError(`no MatMul rewritten: none of the ${report.skipped.length} has a constant ${pattern.n}:${pattern.m}-sparse weight with a known input rank (${why}); prune with --pattern ${pattern.n}:${pattern.m} first, or pass --all`);
      }
      const parity = await gemmParity(model, out);
      if (!(parity.maxRelDiff <= 1e-4)) throw new ShearsError(`the rewritten model's outputs differ from the original's in onnxruntime (max relative difference ${parity.maxRelDiff}): not written`);
      saveModel(out, o.output);
      if (o.json) {
        process.stdout.write(`${JSON.stringify({ model: path, output: o.output, ...report, maxRelDiff: parity.maxRelDiff })}\n`);
        return;
      }
      const biases = report.rewritten.filter((r) => r.bias).length;
      const reshaped = report.rewritten.filter((r) => r.inputRank > 2).length;
      const lines = [
        `${report.rewritten.length} MatMul(s) now Gemm (${reshaped} with Reshape to 2-D and back, ${biases} with the bias Add folded into C); ${report.skipped.length} left as MatMul`,
        ...report.skipped.slice(0, 10).map((s) => `  kept MatMul: ${s.node} (${s.reason})`),
        ...(report.skipped.length > 10 ? [`  ... and ${report.skipped.length - 10} more`] : []),
        `onnxruntime: outputs equal the original's on random inputs (max relative difference ${parity.maxRelDiff.toExponential(2)})`,
        `wrote ${o.output}`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
