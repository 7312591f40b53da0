import type { Command } from 'commander';

export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description('Per-layer parameters, MACs, sizes and sparsity of an ONNX model')
    .argument('<model>', 'path to an .onnx file')
    .option('--input-shape <spec...>', 'static shape for an input, NAME=1x3x224x224 (repeatable)')
    .option('--json', 'print one JSON object instead of tables')
    .action(async () => {
      throw new Error('not implemented yet');
    });
}
