/** `shears bench MODEL [--batch B] [--threads T] [--warmup W] [--runs R] [--input-shape ...] [--json]`. */
import type { Command } from 'commander';
import { loadModel } from '../onnx/io.js';
import { parseInputShapes, parseNumber } from './args.js';
import { measureLatency } from '../metrics/latency.js';

interface BenchCli {
  batch?: string;
  threads?: string;
  warmup?: string;
  runs?: string;
  inputShape?: string[];
  json?: boolean;
}

export function registerBench(program: Command): void {
  program
    .command('bench')
    .description('Measure onnxruntime-node latency (warm-up, then timed runs: median, p90, mean, min)')
    .argument('<model>', 'path to an .onnx file')
    .option('--batch <n>', 'value for dynamic input dimensions (default 1)')
    .option('--threads <n>', 'onnxruntime intra-op threads (default: onnxruntime\'s choice)')
    .option('--warmup <n>', 'untimed runs first (default 5)')
    .option('--runs <n>', 'timed runs (default 20)')
    .option('--input-shape <spec...>', 'static input shape NAME=1x3x224x224 (repeatable)')
    .option('--json', 'print one JSON object')
    .action(async (path: string, o: BenchCli) => {
      const model = loadModel(path);
      const r = await measureLatency(model, {
        batch: o.batch !== undefined ? parseNumber(o.batch, '--batch', { min: 1, integer: true }) : 1,
        ...(o.threads !== undefined ? { threads: parseNumber(o.threads, '--threads', { min: 1, integer: true }) } : {}),
        warmup: o.warmup !== undefined ? parseNumber(o.warmup, '--warmup', { min: 0, integer: true }) : 5,
        runs: o.runs !== undefined ? parseNumber(o.runs, '--runs', { min: 1, integer: true }) : 20,
        inputShapes: parseInputShapes(o.inputShape, model),
      });
      if (o.json) {
        process.stdout.write(`${JSON.stringify({ model: path, ...r }, null, 2)}\n`);
        return;
      }
      const shapes = Object.entries(r.inputShapes).map(([k, v]) => `${k}=${v.join('x')}`).join(' ');
      process.stdout.write(`${path}: median ${r.median.toFixed(3)} ms, p90 ${r.p90.toFixed(3)} ms, mean ${r.mean.toFixed(3)} ms, min ${r.min.toFixed(3)} ms ` +
        `(${r.runs} runs after ${r.warmup} warm-up; ${shapes}; threads ${r.threads ?? 'default'})\n`);
    });
}
