/**
 * The transformer targets of the structured-pruning issue, run as a user runs them (the CLI in child processes),
 * on the shared models:
 * - vit_fmnist (dense 85.69%): half the heads (2 of 4 per block) with lsq repair; --target-macs 0.5 (heads and MLP,
 *   at the transformer defaults: heads cut at 0.3x the MLP's fraction, --head-rate) with repair, then + 1 epoch of
 *   fine-tuning (transformer defaults: AdamW 3e-4, batch 64); the 50%-MACs model's latency against the dense one
 *   at batch 32, 1 thread (interleaved runs);
 * - tiny_llama_py (dense 2.2034 bits/byte): 2 of 8 KV groups (a KV head with its 4 query heads) by importance with
 *   repair; MLP -50% with activation importance and repair, then + 120 fine-tuning steps of 16 windows; one block
 *   removed by block influence, repaired.
 * Prints one JSON object per experiment (the command, the measured figure, the target, the PyTorch reference of
 * ../shared/README.md, wall times), the CPU model and load averages. Accuracy on the full 10k test set; bits per
 * byte on 64 evenly spaced windows of 256 bytes of val.bin (the shared protocol).
 * Usage: node dist/bench/transformers.js [vit|lm|all] [--skip-finetune]
 * Optional: SHEARS_TV=/dir with torchvision vit_b_16.onnx / swin_t.onnx exports adds the 50%-MACs checks on them.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const shared = ['../shared', '/work/shared'].find((p) => existsSync(`${p}/models/vit_fmnist.onnx`));
if (!shared) {
  process.stderr.write('bench/transformers: needs ../shared/models/{vit_fmnist,tiny_llama_py}.onnx and ../shared/data\n');
  process.exit(1);
}
const which = process.argv[2] ?? 'all';
const skipFinetune = process.argv.includes('--skip-finetune');
const VIT = `${shared}/models/vit_fmnist.onnx`;
const LM = `${shared}/models/tiny_llama_py.onnx`;
const FM = `idx:${shared}/data/fashion-mnist`;
const NORM = ['--mean', '0.2860', '--std', '0.3530'];
const TRAIN = `tokens:${shared}/data/pycorpus/train.bin`;
const VAL = `tokens:${shared}/data/pycorpus/val.bin`;
const LMSHAPE = ['--input-shape', 'input_ids=1x256'];
const dir = mkdtempSync(join(tmpdir(), 'shears-transformers-'));
const load = () => loadavg().map((v) => +v.toFixed(2));

function shears(args: string[]): { json: Record<string, unknown>; seconds: number } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [CLI, ...args, '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 2 ** 28 });
  const seconds = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`shears ${args.join(' ')} exited with ${r.status}: ${r.stderr.split('\n').filter((l) => /error/.test(l)).join(' | ')}`);
  return { json: JSON.parse(r.stdout) as Record<string, unknown>, seconds };
}

const top1 = (model: string) => ((shears(['eval', model, '--data', `${FM}@t10k`, ...NORM]).json['accuracy'] as { top1: number }).top1);
const bpb = (model: string) => ((shears(['eval', model, '--data', VAL, '--context', '256']).json['perplexity'] as { bitsPerToken: number }).bitsPerToken);

function emit(o: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ ...o, cpu: cpus()[0]?.model, load: load() })}\n`);
}

function experiment(name: string, out: string, args: string[], score: (m: string) => number, target: string, reference?: string): Record<string, unknown> {
  const p = shears(['prune', ...args, '-o', out]);
  const j = p.json as { macsRatio?: number; paramsRatio?: number; finetune?: { seconds?: number }; lm?: { seconds?: number } };
  const rec = { name, command: `shears prune ${args.join(' ')} -o OUT`, macsRatio: j.macsRatio, paramsRatio: j.paramsRatio, score: +score(out).toFixed(4), target, ...(reference ? { pytorch: reference } : {}), pruneSeconds: +p.seconds.toFixed(1), ...(j.finetune ? { finetune: j.finetune } : {}) };
  emit(rec);
  return rec;
}

/** Interleaved latency of two models (median ms), batch and thread count as given. */
function latencyRatio(a: string, b: string, batch: number, rounds = 3): Record<string, unknown> {
  const ms: Record<string, number[]> = { a: [], b: [] };
  for (let r = 0; r < rounds; r++) {
    for (const [k, m] of [['a', a], ['b', b]] as const) {
      const j = shears(['bench', m, '--batch', String(batch), '--threads', '1', '--runs', '5', '--warmup', '2']).json as { median: number };
      ms[k]!.push(j.median);
    }
  }
  const med = (v: number[]) => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)]!;
  const ratios = ms['a']!.map((v, i) => v / ms['b']![i]!);
  return { batch, threads: 1, denseMs: ms['a'], prunedMs: ms['b'], speedup: +(med(ms['a']!) / med(ms['b']!)).toFixed(2), speedupRange: [+Math.min(...ratios).toFixed(2), +Math.max(...ratios).toFixed(2)] };
}

try {
  emit({ name: 'start', node: process.version, cores: cpus().length });
  if (which === 'vit' || which === 'all') {
    const calib = ['--calib', `${FM}@train`, ...NORM];
    experiment('vit: 2 of 4 heads per block, lsq repair', join(dir, 'vit_heads.onnx'),
      [VIT, '--structured', '--ratio', '0.5', '--ignore', 'mlp|patch_embed|head', ...calib, '--repair', 'lsq'], top1, '>= 80%', '75.19% without repair');
    const half = join(dir, 'vit_half.onnx');
    experiment('vit: --target-macs 0.5 (heads and MLP), lsq repair', half, [VIT, '--structured', '--target-macs', '0.5', ...calib, '--repair', 'lsq'], top1, '>= 83%');
    emit({ name: 'vit: 50%-MACs model latency vs dense', ...latencyRatio(VIT, half, 32), target: '>= 1.6x' });
    if (!skipFinetune) {
      experiment('vit: --target-macs 0.5, lsq repair, 1 epoch of fine-tuning', join(dir, 'vit_half_ft.onnx'),
        [VIT, '--structured', '--target-macs', '0.5', ...calib, '--repair', 'lsq', '--finetune-epochs', '1', '--train', `${FM}@train`, '--val', `${FM}@t10k`], top1, '>= 85.7% in < 139 s of fine-tuning', '86.50% after 1 epoch (139 s), MLP-50%');
    }
  }
  if (which === 'lm' || which === 'all') {
    const calib = ['--calib', TRAIN, '--calib-size', '32'];
    experiment('lm: 2 of 8 KV groups (global, by importance), lsq repair', join(dir, 'lm_kv.onnx'),
      [LM, ...LMSHAPE, '--structured', '--ratio', '0.25', '--global', '--round-to', '1', '--ignore', 'mlp|lm_head|embed', ...calib, '--repair', 'lsq'], bpb, '<= 2.35', '2.3964 without repair');
    experiment('lm: MLP -50%, activation importance, lsq repair', join(dir, 'lm_mlp.onnx'),
      [LM, ...LMSHAPE, '--structured', '--ratio', '0.5', '--ignore', 'self_attn|lm_head|embed', ...calib, '--repair', 'lsq'], bpb, '<= 2.26', '2.2747 without repair');
    experiment('lm: one block by block influence, lsq repair', join(dir, 'lm_depth.onnx'),
      [LM, ...LMSHAPE, '--structured', '--remove-blocks', '1', ...calib, '--repair', 'lsq'], bpb, '<= 2.45', '2.6063 without repair');
    if (!skipFinetune) {
      experiment('lm: MLP -50%, repair, 120 steps of 16 windows', join(dir, 'lm_mlp_ft.onnx'),
        [LM, ...LMSHAPE, '--structured', '--ratio', '0.5', '--ignore', 'self_attn|lm_head|embed', ...calib, '--repair', 'lsq', '--finetune-steps', '120', '--train', TRAIN, '--val', VAL], bpb, '<= 2.16 in < 166 s', '2.1597 after 166 s');
    }
  }
  const tv = process.env['SHEARS_TV'];
  if (tv) {
    for (const name of ['vit_b_16', 'swin_t']) {
      const m = join(tv, `${name}.onnx`);
      if (!existsSync(m)) continue;
      const out = join(dir, `${name}_half.onnx`);
      const p = shears(['prune', m, '--structured', '--target-macs', '0.5', '-o', out]);
      emit({ name: `${name}: --target-macs 0.5`, macsRatio: p.json['macsRatio'], ...(name === 'vit_b_16' ? latencyRatio(m, out, 8) : {}), target: '48-52% MACs, valid; vit_b_16 >= 1.6x at batch 8' });
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
