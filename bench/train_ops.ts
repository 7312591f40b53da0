/**
 * Micro-benchmark of the Conv gradient formulations (bench for ops/grad/conv.ts choices). Prints JSON: process
 * CPU ms per run / threads (spin-waiting off), for ResNet-20 layer shapes at batch 128. CPU time is used because
 * the development machine is shared; compare rows of one run.
 *   node dist/bench/train_ops.js
 */
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import type { Tensor } from '../src/ir/tensor.js';
import { createSession } from '../src/runtime/session.js';

const N = 128;
const threads = 2;
const I = (v: number[]): Tensor => ({ dtype: DataType.INT64, dims: [v.length], data: BigInt64Array.from(v.map(BigInt)) });
const rnd = (dims: number[]): Tensor => ({ dtype: DataType.FLOAT, dims, data: Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => Math.random() - 0.5) });
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

async function time(build: (b: GraphBuilder, i: Record<string, string>) => string, feeds: Record<string, Tensor>, reps = 8): Promise<number> {
  const b = new GraphBuilder('m');
  const ins: Record<string, string> = {};
  for (const [k, t] of Object.entries(feeds)) ins[k] = b.input(k, t.dims);
  b.output(build(b, ins));
  const r = await createSession(b.model(17), { threads, spin: false });
  await r.run(feeds);
  const c = cpu();
  for (let i = 0; i < reps; i++) await r.run(feeds);
  await r.release();
  return +((cpu() - c) / reps / threads).toFixed(2);
}

function onehot(c: number, k: number): Tensor {
  const kk = k * k;
  const d = new Float32Array(c * kk * kk);
  for (let ch = 0; ch < c; ch++) for (let j = 0; j < kk; j++) d[(ch * kk + j) * kk + j] = 1;
  return { dtype: DataType.FLOAT, dims: [c * kk, 1, k, k], data: d };
}

async function main() {
  const out: Record<string, Record<string, number>> = {};
  for (const [C, H] of [[16, 28], [32, 14], [64, 7]] as const) {
    const P = H * H;
    const x = rnd([N, C, H, H]);
    const g = rnd([N, C, H, H]);
    const w = rnd([C, C, 3, 3]);
    const row: Record<string, number> = {};
    row['forward conv, weights as input'] = await time((b, i) => b.node('Conv', [i['x']!, i['w']!], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }), { x, w });
    row['forward conv, constant weights (NCHWc)'] = await time((b, i) => b.node('Conv', [i['x']!, b.init('wc', w)], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }), { x });
    row['dX ConvTranspose'] = await time((b, i) => b.node('ConvTranspose', [i['g']!, i['w']!], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }), { g, w });
    row['dX Conv with flipped weights (used, stride 1)'] = await time((b, i) => {
      const wt = b.node('Transpose', [i['w']!], { perm: [1, 0, 2, 3] });
      const wf = b.node('Slice', [wt, b.init('s', I([-1, -1])), b.init('e', I([-100, -100])), b.init('a', I([2, 3])), b.init('st', I([-1, -1]))]);
      return b.node('Conv', [i['g']!, wf], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] });
    }, { g, w });
    row['dW Conv over transposed tensors'] = await time((b, i) => {
      const xt = b.node('Transpose', [i['x']!], { perm: [1, 0, 2, 3] });
      const gt = b.node('Transpose', [i['g']!], { perm: [1, 0, 2, 3] });
      return b.node('Conv', [xt, gt], { kernel_shape: [H, H], pads: [1, 1, 1, 1] });
    }, { x, g });
    row['dW one-hot im2col + batched MatMul'] = await time((b, i) => {
      const cols = b.node('Conv', [i['x']!, b.init('oh', onehot(C, 3))], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], group: C });
      const c3 = b.node('Reshape', [cols, b.init('s1', I([N, 9 * C, P]))]);
      const g3 = b.node('Transpose', [b.node('Reshape', [i['g']!, b.init('s2', I([N, C, P]))])], { perm: [0, 2, 1] });
      return b.node('ReduceSum', [b.node('MatMul', [c3, g3]), b.init('ax', I([0]))], { keepdims: 0 });
    }, { x, g });
    row['dW shifted rows of x and columns of g + batched MatMul (used)'] = await time((b, i) => {
      const xf = b.node('Reshape', [i['x']!, b.init('sx', I([N, C, P]))]);
      const xs = [0, 1, 2].map((a) => (a === 1 ? xf : b.node('Pad', [xf, b.init(`px${a}`, I([0, 0, (1 - a) * H, 0, 0, (a - 1) * H]))])));
      const gs = [0, 1, 2].map((c) => {
        const gc = c === 1 ? i['g']! : b.node('Pad', [i['g']!, b.init(`pg${c}`, I([0, 0, 0, c - 1, 0, 0, 0, 1 - c]))]);
        return b.node('Transpose', [b.node('Reshape', [gc, b.init(`sg${c}`, I([N, C, P]))])], { perm: [0, 2, 1] });
      });
      const outs: string[] = [];
      for (let a = 0; a < 3; a++) for (let c = 0; c < 3; c++) {
        outs.push(b.node('Unsqueeze', [b.node('ReduceSum', [b.node('MatMul', [xs[a]!, gs[c]!]), b.init(`zs${a}${c}`, I([0]))], { keepdims: 0 }), b.init(`us${a}${c}`, I([2]))]));
      }
      return b.node('Concat', outs, { axis: 2 });
    }, { x, g });
    row['dW per-tap Slice + batched MatMul (before)'] = await time((b, i) => {
      const xp = b.node('Pad', [i['x']!, b.init('p', I([0, 0, 1, 1, 0, 0, 1, 1]))]);
      const g3 = b.node('Transpose', [b.node('Reshape', [i['g']!, b.init('s', I([N, C, P]))])], { perm: [0, 2, 1] });
      const outs: string[] = [];
      for (let a = 0; a < 3; a++) for (let c = 0; c < 3; c++) {
        const s = b.node('Slice', [xp, b.init(`st${a}${c}`, I([a, c])), b.init(`en${a}${c}`, I([a + H, c + H])), b.init(`ax${a}${c}`, I([2, 3]))]);
        const s2 = b.node('Reshape', [s, b.init(`r${a}${c}`, I([N, C, P]))]);
        outs.push(b.node('Unsqueeze', [b.node('ReduceSum', [b.node('MatMul', [s2, g3]), b.init(`z${a}${c}`, I([0]))], { keepdims: 0 }), b.init(`u${a}${c}`, I([2]))]));
      }
      return b.node('Concat', outs, { axis: 2 });
    }, { x, g });
    out[`C${C}_H${H}`] = row;
  }
  process.stdout.write(`${JSON.stringify({ batch: N, threads, unit: 'CPU ms per run / threads', results: out }, null, 1)}\n`);
}
main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});
