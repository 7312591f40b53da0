/**
 * Fixtures for multi-input and stateful models (no recurrent ops: MatMul/Tanh/Sigmoid state updates):
 * - a Silero-like voice-activity model: inputs input [1, 512], sr int64 scalar, h and c [2, 1, 64]; outputs
 *   out [1, 1] (sigmoid), hn and cn [2, 1, 64] (the next call's h and c);
 * - a wake-word-like head: input [B, 25, 96] (sequence x features) -> score [B, 1] (sigmoid).
 */
import { writeFileSync } from 'node:fs';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/graph.js';
import { GraphBuilder } from '../src/ir/builder.js';
import { floatTensor, createTensor } from '../src/ir/tensor.js';
import { randn } from './repair-fixture.js';

const i64 = (v: number[]) => createTensor(DataType.INT64, [v.length], BigInt64Array.from(v.map(BigInt)));

export function sileroLike(seed = 1): Model {
  const b = new GraphBuilder('silero_like');
  const x = b.input('input', [1, 512]);
  const sr = b.input('sr', [], DataType.INT64);
  const h = b.input('h', [2, 1, 64]);
  const c = b.input('c', [2, 1, 64]);
  const flat = b.init('flat', i64([1, 128]));
  const back = b.init('back', i64([2, 1, 64]));
  const hs = b.node('Reshape', [h, flat]);
  const cs = b.node('Reshape', [c, flat]);
  // the sample rate enters as a small bias (so the input is used and must be fed)
  const srf = b.node('Mul', [b.node('Cast', [sr], { to: DataType.FLOAT }), b.init('srk', floatTensor([], [1e-5]))]);
  const wx = b.node('MatMul', [x, b.init('wx', floatTensor([512, 128], randn(512 * 128, seed, 0.05)))], {}, { name: 'mm_x' });
  const uh = b.node('MatMul', [hs, b.init('uh', floatTensor([128, 128], randn(128 * 128, seed + 1, 0.1)))], {}, { name: 'mm_h' });
  const z = b.node('Tanh', [b.node('Add', [b.node('Add', [wx, uh]), srf])]);
  const gx = b.node('MatMul', [x, b.init('gx', floatTensor([512, 128], randn(512 * 128, seed + 2, 0.05)))], {}, { name: 'mm_gx' });
  const g = b.node('Sigmoid', [b.node('Add', [gx, b.node('MatMul', [hs, b.init('gh', floatTensor([128, 128], randn(128 * 128, seed + 3, 0.1)))], {}, { name: 'mm_gh' })])]);
  const cn = b.node('Add', [b.node('Mul', [g, cs]), b.node('Mul', [z, b.init('half', floatTensor([], [0.5]))])]);
  const hn = b.node('Tanh', [cn]);
  const logit = b.node('Add', [b.node('MatMul', [hn, b.init('v', floatTensor([128, 1], randn(128, seed + 4, 0.3)))], {}, { name: 'mm_out' }), b.init('bv', floatTensor([1], [0.1]))]);
  b.node('Sigmoid', [logit], {}, { output: 'out' });
  b.node('Reshape', [hn, back], {}, { output: 'hn' });
  b.node('Reshape', [cn, back], {}, { output: 'cn' });
  b.output('out', [1, 1]);
  b.output('hn', [2, 1, 64]);
  b.output('cn', [2, 1, 64]);
  return b.model(17);
}

export function wakeWordHead(seed = 5, batch: number | string = 'N'): Model {
  const b = new GraphBuilder('wake_word_head');
  const x = b.input('x', [batch, 25, 96]);
  const t = b.node('Tanh', [b.node('MatMul', [x, b.init('w1', floatTensor([96, 16], randn(96 * 16, seed, 0.1)))], {}, { name: 'mm1' })]);
  const f = b.node('Flatten', [t], { axis: 1 });
  const logit = b.node('MatMul', [f, b.init('w2', floatTensor([400, 1], randn(400, seed + 1, 0.1)))], {}, { name: 'mm2' });
  b.node('Sigmoid', [logit], {}, { output: 'score' });
  b.output('score', [batch, 1]);
  return b.model(17);
}

/** A little-endian float32 .npy file of `dims`. */
export function writeNpy(path: string, dims: number[], data: Float32Array): void {
  let h = `{'descr': '<f4', 'fortran_order': False, 'shape': (${dims.join(', ')}${dims.length === 1 ? ',' : ''}), }`;
  h += ' '.repeat((64 - ((10 + h.length + 1) % 64)) % 64) + '\n';
  const out = new Uint8Array(10 + h.length + data.byteLength);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, h.length & 0xff, h.length >> 8]);
  out.set(new TextEncoder().encode(h), 10);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 10 + h.length);
  writeFileSync(path, out);
}
