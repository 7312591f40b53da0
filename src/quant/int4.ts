/**
 * Weight-only int4 quantization of matrix-product layers into onnxruntime's MatMulNBits (com.microsoft):
 * W [K, N] is cut into blocks of `blockSize` along K per output column; each block gets a float scale and a
 * 4-bit zero point (asymmetric, range includes 0), values q in [0, 15], W' = (q - zp) * scale. Layout (as the
 * contrib op defines it): B uint8 [N, ceil(K/bs), bs/2] with element k in the low nibble when k is even,
 * scales [N * ceil(K/bs)], zero_points uint8 [N * ceil(ceil(K/bs)/2)] packed the same way.
 * Activations stay float: this buys size (about 8x smaller weights) and memory bandwidth, for transformer
 * Linear layers; it does not touch convolutions.
 */
import { ShearsError } from '../errors.js';
import { DataType } from '../ir/dtype.js';
import { removeDeadNodes, sortGraph, uniqueName } from '../ir/edit.js';
import type { Model, Node } from '../ir/graph.js';
import { clamp, roundHalfEven } from './math.js';
import { matmulLayers } from './matmul.js';
import { cloneModel } from '../ir/clone.js';

export interface Int4Options {
  /** 16, 32, 64 or 128 (default 32). */
  blockSize?: number;
  exclude?: RegExp;
}

export interface Int4Packed {
  b: Uint8Array;
  scales: Float32Array;
  zeroPoints: Uint8Array;
  blocks: number;
}

/** Packs W [K, N] (row-major) for MatMulNBits. */
export function packInt4(w: Float32Array, k: number, n: number, blockSize: number): Int4Packed {
  const blocks = Math.ceil(k / blockSize);
  const blob = blockSize / 2;
  const b = new Uint8Array(n * blocks * blob);
  const scales = new Float32Array(n * blocks);
  const zpStride = Math.ceil(blocks / 2);
  const zeroPoints = new Uint8Array(n * zpStride);
  for (let o = 0; o < n; o++) {
    for (let blk = 0; blk < blocks; blk++) {
      let lo = 0, hi = 0;
      const k0 = blk * blockSize;
      const k1 = Math.min(k, k0 + blockSize);
      for (let kk = k0; kk < k1; kk++) {
        const v = w[kk * n + o]!;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      const scale = Math.fround(hi > lo ? (hi - lo) / 15 : 1);
      const zp = clamp(roundHalfEven(-lo / scale), 0, 15);
      scales[o * blocks + blk] = scale;
      zeroPoints[o * zpStride + (blk >> 1)]! |= (blk & 1 ? zp << 4 : zp);
      for (let j = 0; j < blockSize; j++) {
        const kk = k0 + j;
        const q = kk < k ? clamp(roundHalfEven(Math.fround(w[kk * n + o]! / scale)) + zp, 0, 15) : zp;
        const at = (o * blocks + blk) * blob + (j >> 1);
        b[at]! |= (j & 1 ? q << 4 : q);
      }
    }
  }
  return { b, scales, zeroPoints, blocks };
}

/** The float weight [K, N] that packed int4 data stands for. */
export function unpackInt4(p: Int4Packed, k: number, n: number, blockSize: number): Float32Array {
  const w = new Float32Array(k * n);
  const blob = blockSize / 2;
  const zpStride = Math.ceil(p.blocks / 2);
  for (let o = 0; o < n; o++) {
    for (let kk = 0; kk < k; kk++) {
      const blk = Math.floor(kk / blockSize), j = kk % blockSize;
      const byte = p.b[(o * p.blocks + blk) * blob + (j >> 1)]!;
      const q = j & 1 ? byte >> 4 : byte & 15;
      const zb = p.zeroPoints[o * zpStride + (blk >> 1)]!;
      const zp = blk & 1 ? zb >> 4 : zb & 15;
      w[kk * n + o] = Math.fround((q - zp) * p.scales[o * p.blocks + blk]!);
    }
  }
  return w;
}

export function quantizeInt4(model: Model, opts: Int4Options = {}): { model: Model; report: { mode: 'int4'; blockSize: number; quantized: Record<string, number>; quantizedNodes: string[]; excluded: { node: string; op: string; reason: string }[] } } {
  const bs = opts.blockSize ?? 32;
  if (![16, 32, 64, 128].includes(bs)) throw new ShearsError(`int4 block size must be 16, 32, 64 or 128, got ${bs}`);
  const work = cloneModel(model);
  const g = work.graph;
  const { layers, skipped } = matmulLayers(work, (n) => !(opts.exclude?.test(n.name) ?? false));
  if (layers.length === 0) throw new ShearsError('nothing to quantize to int4: no MatMul/Gemm with a constant 2-D weight');
  const quantized: Record<string, number> = {};
  const init = (base: string, dtype: number, dims: number[], data: Uint8Array | Float32Array) => {
    const name = uniqueName(g, base);
    g.initializers.set(name, { dtype, dims, data });
    return name;
  };
  const add = (opType: string, inputs: string[], outputs: string[], attrs: Node['attrs'] = new Map(), domain = '') => {
    g.nodes.push({ name: uniqueName(g, `${outputs[0]}_${opType}`), opType, domain, inputs, outputs, attrs });
  };
  for (const L of layers) {
    const p = packInt4(L.w, L.k, L.n, bs);
    const base = L.node.name || L.node.outputs[0]!;
    const bName = init(`${base}_W_int4`, DataType.UINT8, [L.n, p.blocks, bs / 2], p.b);
    const sName = init(`${base}_W_scales`, DataType.FLOAT, [L.n * p.blocks], p.scales);
    const zName = init(`${base}_W_zero_points`, DataType.UINT8, [p.zeroPoints.length], p.zeroPoints);
    const y = L.node.outputs[0]!;
    const needBias = L.bias !== undefined;
    const needAlpha = L.alpha !== 1;
    let out = needBias || needAlpha ? uniqueName(g, `${y}_matmul`) : y;
    add('MatMulNBits', [L.node.inputs[0]!, bName, sName, zName], [out], new Map([
      ['K', { kind: 'int', value: L.k }], ['N', { kind: 'int', value: L.n }], ['bits', { kind: 'int', value: 4 }], ['block_size', { kind: 'int', value: bs }],
    ]), 'com.microsoft');
    if (needAlpha) {
      const next = needBias ? uniqueName(g, `${y}_scaled`) : y;
      add('Mul', [out, init(`${base}_alpha`, DataType.FLOAT, [], Float32Array.of(L.alpha))], [next]);
      out = next;
    }
    if (L.bias) {
      const b = new Float32Array(L.n);
      for (let i = 0; i < L.n; i++) b[i] = L.bias.values[i]! * L.beta;
      add('Add', [out, init(`${base}_bias`, DataType.FLOAT, [L.n], b)], [y]);
    }
    L.node.outputs = [];
    quantized[L.node.opType] = (quantized[L.node.opType] ?? 0) + 1;
  }
  g.nodes = g.nodes.filter((n) => n.outputs.length > 0);
  if (!work.opsetImports.some((o) => o.domain === 'com.microsoft')) work.opsetImports.push({ domain: 'com.microsoft', version: 1 });
  sortGraph(g);
  removeDeadNodes(g);
  work.metadata.set('shears.quantization', JSON.stringify({ mode: 'int4-weight-only', blockSize: bs }));
  return { model: work, report: { mode: 'int4', blockSize: bs, quantized, quantizedNodes: layers.map((l) => l.node.name), excluded: skipped } };
}
