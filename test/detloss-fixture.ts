/** A tiny YOLOv8-shaped detector for the detection-loss tests (a 32x32 input, 20 anchors, 4 bins, 3 classes). */
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/graph.js';
import { numel, type Tensor } from '../src/ir/tensor.js';
import { rng } from './gradcheck.js';

// A 32x32 input, grids 4x4 (stride 8) and 2x2 (stride 16): 20 anchors; 4 bins, 3 classes.
export const R = 4, NC = 3, C = 4 * R + NC, A = 20, IMG = 32;

export function t32(dims: number[], r: () => number, scale: number, bias = 0): Tensor {
  return { dtype: DataType.FLOAT, dims, data: Float32Array.from({ length: numel(dims) }, () => (r() * 2 - 1) * scale + bias) };
}

/** Ultralytics-shaped: convs to P3 (4x4, stride 8) and P4 (2x2, stride 16), a [4R + nc] conv per scale, the DFL decode. */
export function tinyDetector(seed = 1): Model {
  const r = rng(seed);
  const b = new GraphBuilder('tinydet');
  b.input('images', ['N', 3, IMG, IMG]);
  const conv = (x: string, cin: number, cout: number, stride: number, act = true, bias = 0) => {
    const y = b.node('Conv', [x, b.init(b.fresh('w'), t32([cout, cin, 3, 3], r, Math.sqrt(3 / (cin * 9)))), b.init(b.fresh('b'), t32([cout], r, 0.01, bias))], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [stride, stride] });
    return act ? b.node('Mul', [y, b.node('Sigmoid', [y])]) : y;
  };
  const s1 = conv(conv('images', 3, 8, 2), 8, 8, 2); // 8x8
  const p3 = conv(s1, 8, 12, 2); // 4x4
  const p4 = conv(p3, 12, 12, 2); // 2x2
  const headOf = (p: string) => {
    const box = conv(conv(p, 12, 12, 1), 12, 4 * R, 1, false, 1);
    const cls = conv(conv(p, 12, 12, 1), 12, NC, 1, false, -3);
    return b.node('Reshape', [b.node('Concat', [box, cls], { axis: 1 }), b.init(b.fresh('shape'), { dtype: DataType.INT64, dims: [3], data: BigInt64Array.from([0n, BigInt(C), -1n]) })]);
  };
  const cat = b.node('Concat', [headOf(p3), headOf(p4)], { axis: 2 }, { output: 'head' });
  const [bx, cl] = b.nodeN('Split', [cat, b.init('split', { dtype: DataType.INT64, dims: [2], data: BigInt64Array.from([BigInt(4 * R), BigInt(NC)]) })], { axis: 1 }, 2);
  const t = b.node('Transpose', [b.node('Reshape', [bx!, b.init('s4', { dtype: DataType.INT64, dims: [4], data: BigInt64Array.from([0n, 4n, BigInt(R), -1n]) })])], { perm: [0, 2, 1, 3] });
  const sm = b.node('Softmax', [t], { axis: 1 });
  const dfl = b.node('Conv', [sm, b.init('proj', { dtype: DataType.FLOAT, dims: [1, R, 1, 1], data: Float32Array.from({ length: R }, (_, i) => i) })], {}, { name: 'dfl_conv' });
  const dist = b.node('Reshape', [dfl, b.init('s3', { dtype: DataType.INT64, dims: [3], data: BigInt64Array.from([0n, 4n, -1n]) })]);
  const out = b.node('Concat', [dist, b.node('Sigmoid', [cl!])], { axis: 1 }, { output: 'output0' });
  b.output(out);
  return b.model(17);
}

