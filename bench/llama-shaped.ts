/**
 * A Llama-shaped language model with random weights, built with the library's GraphBuilder, at TinyLlama-1.1B
 * dimensions by default (22 layers, hidden 2048, 32 heads, 4 KV heads, head dim 64, SwiGLU MLP 5632, vocab 32000,
 * untied LM head; fp32, about 4.4 GB): the graph torch.onnx.export writes for LlamaForCausalLM (opset 17), with
 * RMSNorm decomposed (Pow, ReduceMean, Add, Sqrt, Reciprocal, Mul), rotary embeddings (cos/sin tables gathered
 * at the positions, rotate_half by Slice/Neg/Concat), grouped-query attention (K/V repeated by Expand), a causal
 * mask and MatMul weights as [K, N] initializers.
 *
 * The weights are lazy tensors (src/ir/lazy.ts) that generate their seeded random values when read; saving with
 * external data writes them one at a time and releases each after it is written, so building the 4.4 GB model
 * holds one tensor at a time (the largest: the embedding and the LM head, 262 MB each).
 *
 * Usage: node dist/bench/llama-shaped.js --out /work/big/llama.onnx [--layers 22] [--seed 1] [--check]
 *   --check: loads the model in onnxruntime and runs random tokens (batch 1, 16 tokens): the logits must be finite.
 */
import { realpathSync } from 'node:fs';
import { DataType } from '../src/ir/dtype.js';
import { GraphBuilder } from '../src/ir/builder.js';
import type { Model } from '../src/ir/graph.js';
import { lazyTensor } from '../src/ir/lazy.js';
import { floatTensor, int64Tensor, type Tensor } from '../src/ir/tensor.js';
import { saveModel } from '../src/onnx/io.js';

export interface LlamaConfig {
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  mlp: number;
  vocab: number;
  /** Rows of the rotary tables (the longest context). */
  maxPositions: number;
  seed: number;
}

export const TINYLLAMA: LlamaConfig = { layers: 22, hidden: 2048, heads: 32, kvHeads: 4, headDim: 64, mlp: 5632, vocab: 32000, maxPositions: 2048, seed: 1 };

/** FNV-1a of a name: each tensor's own random stream. */
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** A lazy float32 tensor of uniform values in [-a, a] (seeded by the name), generated when read. */
function randomTensor(name: string, dims: number[], a: number, seed: number): Tensor {
  const n = dims.reduce((x, y) => x * y, 1);
  return lazyTensor(DataType.FLOAT, dims, 4 * n, () => {
    const out = new Float32Array(n);
    let s = (hash(name) ^ Math.imul(seed, 0x9e3779b9)) >>> 0;
    for (let i = 0; i < n; i++) {
      // mulberry32, inlined
      s = (s + 0x6d2b79f5) >>> 0;
      let t = s;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      out[i] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1) * a;
    }
    return out;
  });
}

export function buildLlama(cfg: LlamaConfig): Model {
  const { hidden: H, heads, kvHeads, headDim: D, mlp, vocab, seed } = cfg;
  const b = new GraphBuilder('llama');
  const ids = b.input('input_ids', ['batch', 'sequence'], DataType.INT64);
  const c = (name: string, t: Tensor) => b.init(name, t);
  const i64 = (name: string, v: number[]) => c(name, int64Tensor([v.length], v));
  const f1 = (name: string, v: number) => c(name, floatTensor([], [v]));
  // a [K, N] weight with std 1/sqrt(K): each MatMul keeps its input's scale
  const weight = (name: string, k: number, n: number) => c(name, randomTensor(name, [k, n], Math.sqrt(3 / k), seed));
  const ones = (name: string, n: number) => c(name, floatTensor([n], new Float32Array(n).fill(1)));

  const two = f1('const_two', 2);
  const eps = f1('const_eps', 1e-5);
  const rmsNorm = (x: string, w: string, prefix: string) => {
    const p = b.node('Pow', [x, two], {}, { name: `${prefix}/Pow` });
    const m = b.node('ReduceMean', [p], { axes: [-1], keepdims: 1 }, { name: `${prefix}/ReduceMean` });
    const a = b.node('Add', [m, eps], {}, { name: `${prefix}/Add` });
    const s = b.node('Sqrt', [a], {}, { name: `${prefix}/Sqrt` });
    const r = b.node('Reciprocal', [s], {}, { name: `${prefix}/Reciprocal` });
    const y = b.node('Mul', [x, r], {}, { name: `${prefix}/Mul` });
    return b.node('Mul', [w, y], {}, { name: `${prefix}/Mul_1` });
  };

  // embedding (std 1: the first RMSNorm rescales anyway)
  const emb = c('model.embed_tokens.weight', randomTensor('model.embed_tokens.weight', [vocab, H], 1.7, seed));
  let h = b.node('Gather', [emb, ids], {}, { name: '/model/embed_tokens/Gather' });

  // positions 0..T-1, the rotary tables at them ([1, 1, T, D]) and the causal mask ([T, T]: 0 or -1e9)
  const shape = b.node('Shape', [ids], {}, { name: '/model/Shape' });
  const seqLen = b.node('Gather', [shape, c('const_one_i', int64Tensor([], [1]))], { axis: 0 }, { name: '/model/Gather_seq' });
  const pos = b.node('Range', [c('const_zero_i', int64Tensor([], [0])), seqLen, c('const_step_i', int64Tensor([], [1]))], {}, { name: '/model/Range' });
  const inv = new Float64Array(D / 2);
  for (let i = 0; i < D / 2; i++) inv[i] = 1 / 10000 ** ((2 * i) / D);
  const cosT = new Float32Array(cfg.maxPositions * D);
  const sinT = new Float32Array(cfg.maxPositions * D);
  for (let p = 0; p < cfg.maxPositions; p++) {
    for (let i = 0; i < D; i++) {
      const ang = p * inv[i % (D / 2)]!;
      cosT[p * D + i] = Math.cos(ang);
      sinT[p * D + i] = Math.sin(ang);
    }
  }
  const unsq01 = i64('const_axes_01', [0, 1]);
  const cos = b.node('Unsqueeze', [b.node('Gather', [c('model.rotary_emb.cos_cached', floatTensor([cfg.maxPositions, D], cosT)), pos], { axis: 0 }, { name: '/model/rotary_emb/Gather' }), unsq01], {}, { name: '/model/rotary_emb/Unsqueeze' });
  const sin = b.node('Unsqueeze', [b.node('Gather', [c('model.rotary_emb.sin_cached', floatTensor([cfg.maxPositions, D], sinT)), pos], { axis: 0 }, { name: '/model/rotary_emb/Gather_1' }), unsq01], {}, { name: '/model/rotary_emb/Unsqueeze_1' });
  const row = b.node('Unsqueeze', [pos, i64('const_axes_1', [1])], {}, { name: '/model/mask/Unsqueeze' });
  const col = b.node('Unsqueeze', [pos, i64('const_axes_0', [0])], {}, { name: '/model/mask/Unsqueeze_1' });
  const future = b.node('Greater', [col, row], {}, { name: '/model/mask/Greater' });
  const mask = b.node('Where', [future, f1('const_neg', -1e9), f1('const_zero', 0)], {}, { name: '/model/mask/Where' });

  const half = D / 2;
  const lastAxis = i64('const_last_axis', [-1]);
  const sliceLo = [i64('const_lo_start', [0]), i64('const_lo_end', [half])];
  const sliceHi = [i64('const_hi_start', [half]), i64('const_hi_end', [D])];
  const rotary = (x: string, prefix: string) => {
    const x1 = b.node('Slice', [x, ...sliceLo, lastAxis], {}, { name: `${prefix}/Slice` });
    const x2 = b.node('Slice', [x, ...sliceHi, lastAxis], {}, { name: `${prefix}/Slice_1` });
    const rot = b.node('Concat', [b.node('Neg', [x2], {}, { name: `${prefix}/Neg` }), x1], { axis: -1 }, { name: `${prefix}/Concat` });
    return b.node('Add', [b.node('Mul', [x, cos], {}, { name: `${prefix}/Mul` }), b.node('Mul', [rot, sin], {}, { name: `${prefix}/Mul_1` })], {}, { name: `${prefix}/Add` });
  };
  const qShape = i64('const_q_shape', [0, 0, heads, D]);
  const kvShape = i64('const_kv_shape', [0, 0, kvHeads, D]);
  const repeat = i64('const_repeat', [1, 1, heads / kvHeads, 1, 1]);
  const merged = i64('const_merged_heads', [0, heads, -1, D]);
  const outShape = i64('const_out_shape', [0, 0, heads * D]);
  const unsq2 = i64('const_axes_2', [2]);
  const scale = f1('const_scale', 1 / Math.sqrt(D));

  for (let l = 0; l < cfg.layers; l++) {
    const P = `/model/layers.${l}`;
    const W = `model.layers.${l}`;
    const x = rmsNorm(h, ones(`${W}.input_layernorm.weight`, H), `${P}/input_layernorm`);
    const q = b.node('MatMul', [x, weight(`${W}.self_attn.q_proj.weight`, H, heads * D)], {}, { name: `${P}/self_attn/q_proj/MatMul` });
    const k = b.node('MatMul', [x, weight(`${W}.self_attn.k_proj.weight`, H, kvHeads * D)], {}, { name: `${P}/self_attn/k_proj/MatMul` });
    const v = b.node('MatMul', [x, weight(`${W}.self_attn.v_proj.weight`, H, kvHeads * D)], {}, { name: `${P}/self_attn/v_proj/MatMul` });
    const heads4 = (t: string, s: string, n: string) => b.node('Transpose', [b.node('Reshape', [t, s], {}, { name: `${P}/self_attn/Reshape_${n}` })], { perm: [0, 2, 1, 3] }, { name: `${P}/self_attn/Transpose_${n}` });
    const qr = rotary(heads4(q, qShape, 'q'), `${P}/self_attn/rotary_q`);
    const kr = rotary(heads4(k, kvShape, 'k'), `${P}/self_attn/rotary_k`);
    const vh = heads4(v, kvShape, 'v');
    // repeat_kv: [B, KV, T, D] -> [B, KV, n_rep, T, D] -> [B, heads, T, D]
    const rep = (t: string, n: string) => b.node('Reshape', [b.node('Expand', [b.node('Unsqueeze', [t, unsq2], {}, { name: `${P}/self_attn/Unsqueeze_${n}` }), repeat], {}, { name: `${P}/self_attn/Expand_${n}` }), merged], {}, { name: `${P}/self_attn/Reshape_rep_${n}` });
    const kt = b.node('Transpose', [rep(kr, 'k')], { perm: [0, 1, 3, 2] }, { name: `${P}/self_attn/Transpose_kt` });
    const scores = b.node('Add', [b.node('Mul', [b.node('MatMul', [qr, kt], {}, { name: `${P}/self_attn/MatMul` }), scale], {}, { name: `${P}/self_attn/Mul_scale` }), mask], {}, { name: `${P}/self_attn/Add_mask` });
    const probs = b.node('Softmax', [scores], { axis: -1 }, { name: `${P}/self_attn/Softmax` });
    const ctx = b.node('MatMul', [probs, rep(vh, 'v')], {}, { name: `${P}/self_attn/MatMul_1` });
    const flat = b.node('Reshape', [b.node('Transpose', [ctx], { perm: [0, 2, 1, 3] }, { name: `${P}/self_attn/Transpose_out` }), outShape], {}, { name: `${P}/self_attn/Reshape_out` });
    const o = b.node('MatMul', [flat, weight(`${W}.self_attn.o_proj.weight`, heads * D, H)], {}, { name: `${P}/self_attn/o_proj/MatMul` });
    h = b.node('Add', [h, o], {}, { name: `${P}/Add` });
    const x2 = rmsNorm(h, ones(`${W}.post_attention_layernorm.weight`, H), `${P}/post_attention_layernorm`);
    const g = b.node('MatMul', [x2, weight(`${W}.mlp.gate_proj.weight`, H, mlp)], {}, { name: `${P}/mlp/gate_proj/MatMul` });
    const u = b.node('MatMul', [x2, weight(`${W}.mlp.up_proj.weight`, H, mlp)], {}, { name: `${P}/mlp/up_proj/MatMul` });
    const silu = b.node('Mul', [g, b.node('Sigmoid', [g], {}, { name: `${P}/mlp/act_fn/Sigmoid` })], {}, { name: `${P}/mlp/act_fn/Mul` });
    const d = b.node('MatMul', [b.node('Mul', [silu, u], {}, { name: `${P}/mlp/Mul` }), weight(`${W}.mlp.down_proj.weight`, mlp, H)], {}, { name: `${P}/mlp/down_proj/MatMul` });
    h = b.node('Add', [h, d], {}, { name: `${P}/Add_1` });
  }
  const xf = rmsNorm(h, ones('model.norm.weight', H), '/model/norm');
  b.node('MatMul', [xf, weight('lm_head.weight', H, vocab)], {}, { name: '/lm_head/MatMul', output: 'logits' });
  b.output('logits', ['batch', 'sequence', vocab]);
  return b.model(17);
}

/** Parameters of the model (initializer elements). */
export function parameterCount(m: Model): number {
  let n = 0;
  for (const t of m.graph.initializers.values()) n += t.dims.reduce((a, d) => a * d, 1);
  return n;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const flag = (name: string, dflt?: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1]! : dflt;
  };
  const out = flag('--out');
  if (!out) throw new Error('give --out PATH.onnx (under /tmp or /work/big: never in the repository)');
  const cfg = { ...TINYLLAMA, layers: Number(flag('--layers', '22')), seed: Number(flag('--seed', '1')) };
  const t0 = performance.now();
  const model = buildLlama(cfg);
  const saved = saveModel(model, out, { externalData: true });
  const seconds = (performance.now() - t0) / 1000;
  const result: Record<string, unknown> = { out, externalFile: saved.externalFile, layers: cfg.layers, parameters: parameterCount(model), buildSeconds: +seconds.toFixed(1), peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024) };
  if (args.includes('--check')) {
    const { createSession } = await import('../src/runtime/session.js');
    const t1 = performance.now();
    const runner = await createSession(realpathSync(out));
    const tokens = Array.from({ length: 16 }, (_, i) => (i * 7919 + 13) % cfg.vocab);
    const res = await runner.run({ input_ids: int64Tensor([1, 16], tokens) });
    await runner.release();
    const logits = res['logits']!;
    const d = logits.data as Float32Array;
    let finite = true;
    let sq = 0;
    for (const v of d) {
      if (!Number.isFinite(v)) finite = false;
      sq += v * v;
    }
    result['check'] = { dims: logits.dims, finite, logitRms: +Math.sqrt(sq / d.length).toFixed(4), seconds: +((performance.now() - t1) / 1000).toFixed(1), peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024) };
    if (!finite) process.exitCode = 1;
  }
  process.stdout.write(`${JSON.stringify(result, null, 1)}\n`);
}

if (process.argv[1] && import.meta.url === `file://${realpathSync(process.argv[1])}`) await main();
