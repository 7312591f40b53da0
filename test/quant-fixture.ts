/** Small float models for the quantization tests, built with GraphBuilder (seeded random weights). */
import { readFileSync } from 'node:fs';
import { mixedSeedRng as rng } from '../src/random.js';
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/graph.js';
import type { Tensor } from '../src/ir/tensor.js';
import type { CalibrationData } from '../src/quant/index.js';

export function randTensor(dims: number[], seed: number, scale = 1, offset = 0): Tensor {
  const r = rng(seed);
  const n = dims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = offset + scale * (2 * r() - 1);
  return { dtype: DataType.FLOAT, dims, data };
}

/** x [2,4,6,6] -> Conv 3x3 (6 out, bias) -> Relu -> y (a graph output). */
export function convReluModel(): Model {
  const b = new GraphBuilder('conv_relu');
  b.input('x', [2, 4, 6, 6]);
  b.init('W', randTensor([6, 4, 3, 3], 1, 0.4));
  b.init('B', randTensor([6], 2, 0.2));
  const c = b.node('Conv', ['x', 'W', 'B'], { pads: [1, 1, 1, 1], kernel_shape: [3, 3] }, { name: 'conv' });
  b.node('Relu', [c], {}, { name: 'relu', output: 'y' });
  b.output('y', [2, 6, 6, 6]);
  return b.model(17);
}

/**
 * A small residual CNN: Conv -> Relu -> MaxPool -> Conv -> Add(skip) -> Relu -> GlobalAveragePool -> Flatten ->
 * Gemm (transB, bias) -> logits.
 */
export function smallCnn(batch = 4): Model {
  const b = new GraphBuilder('small_cnn');
  b.input('x', [batch, 3, 12, 12]);
  b.init('W1', randTensor([16, 3, 3, 3], 11, 0.5));
  b.init('B1', randTensor([16], 12, 0.1));
  b.init('W2', randTensor([16, 16, 3, 3], 13, 0.15));
  b.init('B2', randTensor([16], 14, 0.1));
  b.init('Wfc', randTensor([5, 16], 15, 0.5));
  b.init('Bfc', randTensor([5], 16, 0.1));
  const c1 = b.node('Conv', ['x', 'W1', 'B1'], { pads: [1, 1, 1, 1] }, { name: 'conv1' });
  const r1 = b.node('Relu', [c1], {}, { name: 'relu1' });
  const p = b.node('MaxPool', [r1], { kernel_shape: [2, 2], strides: [2, 2] }, { name: 'pool' });
  const c2 = b.node('Conv', [p, 'W2', 'B2'], { pads: [1, 1, 1, 1] }, { name: 'conv2' });
  const s = b.node('Add', [c2, p], {}, { name: 'add' });
  const r2 = b.node('Relu', [s], {}, { name: 'relu2' });
  const g = b.node('GlobalAveragePool', [r2], {}, { name: 'gap' });
  const f = b.node('Flatten', [g], {}, { name: 'flatten' });
  b.node('Gemm', [f, 'Wfc', 'Bfc'], { transB: 1 }, { name: 'fc', output: 'logits' });
  b.output('logits', [batch, 5]);
  return b.model(17);
}

/** `batches` seeded batches of uniform inputs in [-1, 1] for the model's input `x`. */
export function calibFeeds(dims: number[], batches = 3, seed = 100): CalibrationData {
  return () => Array.from({ length: batches }, (_, i) => ({ x: randTensor(dims, seed + i) }));
}

/** x -> one layer -> y; the layer's weights, per output channel, all of one magnitude (all quantize to +-qmax). */
export interface SaturationCase {
  name: string;
  /** The integer op onnxruntime fuses the layer into. */
  fused: 'QLinearConv' | 'QLinearMatMul' | 'QGemm';
  model: Model;
  /** Inputs of values -0.5 and 1.5 (uint8 0 and 255 once quantized over [-0.5, 1.5]); also the calibration data. */
  inputs: Tensor[];
}

/**
 * Conv, MatMul and Gemm layers and inputs that are the worst case for integer kernels that add pairs of u8*s8
 * products in int16 (onnxruntime's x86 U8S8 kernels without VNNI): every weight is +-qmax, and the inputs put
 * uint8 255 against the positive weights (all 1.5; 1.5 where a channel's weight is positive, -0.5 elsewhere;
 * random). Half the output channels have positive weights only, half random signs.
 */
export function saturationCases(): SaturationCase[] {
  const r = rng(77);
  const K = 64, N = 6, C = 16, O = 4;
  const sign = (channels: number, k: number) => Array.from({ length: channels }, (_, o) => Array.from({ length: k }, () => (o < channels / 2 || r() < 0.5 ? 1 : -1)));
  const mag = (o: number) => 0.05 + 0.02 * o;
  const rows = (s: number[][], k: number, n: number) => {
    const pick = s[s.length - 1]!;
    const pats = [Array<number>(k).fill(1.5), pick.map((v) => (v > 0 ? 1.5 : -0.5)), Array.from({ length: k }, () => (r() < 0.5 ? 1.5 : -0.5))];
    return Array.from({ length: n }, (_, i) => pats[i % pats.length]!);
  };
  const batch = (dims: number[], rs: number[][], spatial = 1): Tensor => {
    const data = new Float32Array(dims.reduce((a, b) => a * b, 1));
    const per = rs[0]!.length * spatial;
    rs.forEach((row, i) => row.forEach((v, c) => data.fill(v, i * per + c * spatial, i * per + (c + 1) * spatial)));
    return { dtype: DataType.FLOAT, dims, data };
  };
  const cases: SaturationCase[] = [];
  {
    // Conv 3x3, 16 -> 4 channels: weight signs depend on the input channel only, inputs are constant per channel
    const s = sign(O, C);
    const w = new Float32Array(O * C * 9);
    for (let o = 0; o < O; o++) for (let c = 0; c < C; c++) w.fill(mag(o) * s[o]![c]!, (o * C + c) * 9, (o * C + c + 1) * 9);
    const b = new GraphBuilder('sat_conv');
    b.input('x', [3, C, 4, 4]);
    b.init('W', { dtype: DataType.FLOAT, dims: [O, C, 3, 3], data: w });
    b.init('B', randTensor([O], 78, 0.1));
    b.node('Conv', ['x', 'W', 'B'], { pads: [1, 1, 1, 1] }, { name: 'conv', output: 'y' });
    b.output('y', [3, O, 4, 4]);
    cases.push({ name: 'Conv', fused: 'QLinearConv', model: b.model(17), inputs: [batch([3, C, 4, 4], rows(s, C, 3), 16)] });
  }
  const s = sign(N, K);
  const xs = [batch([3, K], rows(s, K, 3))];
  {
    const w = new Float32Array(K * N); // [K, N]
    for (let k = 0; k < K; k++) for (let o = 0; o < N; o++) w[k * N + o] = mag(o) * s[o]![k]!;
    const b = new GraphBuilder('sat_matmul');
    b.input('x', [3, K]);
    b.init('W', { dtype: DataType.FLOAT, dims: [K, N], data: w });
    b.node('MatMul', ['x', 'W'], {}, { name: 'mm', output: 'y' });
    b.output('y', [3, N]);
    cases.push({ name: 'MatMul', fused: 'QLinearMatMul', model: b.model(17), inputs: xs });
  }
  {
    const w = new Float32Array(N * K); // [N, K], transB
    for (let o = 0; o < N; o++) for (let k = 0; k < K; k++) w[o * K + k] = mag(o) * s[o]![k]!;
    const b = new GraphBuilder('sat_gemm');
    b.input('x', [3, K]);
    b.init('W', { dtype: DataType.FLOAT, dims: [N, K], data: w });
    b.init('B', randTensor([N], 79, 0.1));
    b.node('Gemm', ['x', 'W', 'B'], { transB: 1 }, { name: 'fc', output: 'y' });
    b.output('y', [3, N]);
    cases.push({ name: 'Gemm', fused: 'QGemm', model: b.model(17), inputs: xs });
  }
  return cases;
}

/**
 * Whether this CPU runs onnxruntime's x86 U8S8 kernels with int16 pair sums (x86-64 without AVX512-VNNI or
 * AVX-VNNI); undefined where that cannot be told (not Linux, or not x86-64).
 */
export function u8s8Saturates(): boolean | undefined {
  if (process.arch !== 'x64') return undefined;
  let info: string;
  try {
    info = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return undefined;
  }
  const flags = new Set(/^flags\s*:(.*)$/m.exec(info)?.[1]?.trim().split(/\s+/) ?? []);
  if (flags.size === 0) return undefined;
  return !flags.has('avx512_vnni') && !flags.has('avx_vnni');
}
