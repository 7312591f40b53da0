/**
 * Fixtures for the op registry's quantization rules (OpDef.quant), as data. test/quant-fusion.test.ts runs them:
 * a 'qdq' fixture is quantized to int8 QDQ and onnxruntime must run it as integer kernels (Q/DQ left only at the
 * model's boundary, no float node of a 'compute' or 'clamp' op left); an 'fp16' fixture is converted to float16
 * and must load, run and stay close, with float Cast targets (castTo) turned float16 and the keepFloat32 inputs
 * float32. test/registry-coverage.test.ts checks that every op with a QDQ role (`kind`) appears in a 'qdq'
 * fixture and every op with castTo/keepFloat32 in an 'fp16' one. The ops under test sit between quantized layers
 * (Conv, or Gemm for 2-D data), so that their inputs are quantized.
 */
import { F, GraphBuilder } from '../../src/ir/builder.js';
import { DataType } from '../../src/ir/dtype.js';
import type { Model, Node } from '../../src/ir/graph.js';
import { opDef } from '../../src/ops/registry.js';
import { floatTensor, int64Tensor, numel } from '../../src/ir/tensor.js';
import { rng } from '../../src/random.js';

export interface QuantCase {
  name: string;
  check: 'qdq' | 'fp16';
  model(): Model;
  /** Shape of the model's one input, `x`. */
  inShape: number[];
}

/**
 * The float16 rules a node exercises: castTo when its target is float32 (that target becomes float16), and the
 * keepFloat32 input positions it uses.
 */
export function fp16Rules(node: Node): { castTo?: string; keepFloat32: number[] } {
  const rule = opDef(node)?.quant;
  const castTo = rule?.castTo && node.attrs.get(rule.castTo)?.value === DataType.FLOAT ? rule.castTo : undefined;
  const keepFloat32 = (rule?.keepFloat32 ?? []).filter((i) => (node.inputs[i] ?? '') !== '');
  return { ...(castTo ? { castTo } : {}), keepFloat32 };
}

class Net {
  readonly b = new GraphBuilder('qdq');
  private readonly r: () => number;
  constructor(seed: number) {
    this.r = rng(seed);
  }
  w(dims: number[], scale = 0.4): string {
    return this.b.init(this.b.fresh('p'), floatTensor(dims, Array.from({ length: numel(dims) }, () => (this.r() * 2 - 1) * scale)));
  }
  i64(values: number[]): string {
    return this.b.init(this.b.fresh('i'), int64Tensor([values.length], values));
  }
  conv(x: string, cin: number, cout: number, k = 3): string {
    const p = Math.floor(k / 2);
    return this.b.node('Conv', [x, this.w([cout, cin, k, k]), this.w([cout], 0.1)], { pads: [p, p, p, p] });
  }
  out(y: string, opset = 17): Model {
    this.b.output(y);
    return this.b.model(opset);
  }
}

/** x [2,4,6,6] -> Conv (8 channels) -> `mid` -> Conv (1x1, 6 channels) -> y. */
function between(seed: number, mid: (n: Net, c: string) => string, opset = 17): Model {
  const n = new Net(seed);
  const c = n.conv(n.b.input('x', [2, 4, 6, 6]), 4, 8);
  const m = mid(n, c);
  return n.out(n.b.node('Conv', [m, n.w([6, 8, 1, 1]), n.w([6], 0.1)], {}, { output: 'y' }), opset);
}

export const QUANT_CASES: QuantCase[] = [
  {
    check: 'qdq',
    name: 'compute: Conv -> Relu (clamp) -> Add of two Convs -> Mul -> LeakyRelu -> Sigmoid -> AveragePool -> Conv',
    model: () => between(1, (n, c) => {
      const b = n.b;
      const r = b.node('Relu', [c]);
      const a = b.node('Add', [r, n.conv(r, 8, 8)]);
      const m = b.node('Mul', [a, b.node('Sigmoid', [n.conv(r, 8, 8, 1)])]);
      return b.node('AveragePool', [b.node('LeakyRelu', [m], { alpha: F(0.1) })], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] });
    }),
    inShape: [2, 4, 6, 6],
  },
  {
    check: 'qdq',
    name: 'Clip (clamp) and Concat (compute) between Convs',
    model: () => between(2, (n, c) => {
      const b = n.b;
      const lo = b.init('lo', floatTensor([], [0])), hi = b.init('hi', floatTensor([], [6]));
      const k = b.node('Clip', [c, lo, hi]);
      return b.node('Concat', [n.conv(k, 8, 4), b.node('Clip', [n.conv(k, 8, 4), lo, hi])], { axis: 1 });
    }),
    inShape: [2, 4, 6, 6],
  },
  {
    check: 'qdq',
    name: 'moves: MaxPool, Transpose, Reshape, Unsqueeze/Squeeze, Slice, Split, Resize',
    model: () => between(3, (n, c) => {
      const b = n.b;
      const p = b.node('MaxPool', [c], { kernel_shape: [2, 2], strides: [2, 2] }); // [2,8,3,3]
      const t = b.node('Transpose', [p], { perm: [0, 1, 3, 2] });
      const r = b.node('Reshape', [b.node('Reshape', [t, n.i64([2, 8, 9])]), n.i64([2, 8, 3, 3])]);
      const s = b.node('Squeeze', [b.node('Unsqueeze', [r, n.i64([2])]), n.i64([2])]);
      const [lo, hi] = b.nodeN('Split', [s, n.i64([4, 4])], { axis: 1 }, 2);
      const sl = b.node('Slice', [b.node('Concat', [hi!, lo!], { axis: 1 }), n.i64([0]), n.i64([2]), n.i64([2])]); // [2,8,2,3]
      return b.node('Resize', [sl, '', b.init('scales', floatTensor([4], [1, 1, 2, 2]))], { mode: 'nearest' });
    }),
    inShape: [2, 4, 6, 6],
  },
  {
    check: 'qdq',
    name: 'GlobalAveragePool (compute) feeding a 1x1 Conv',
    model: () => between(4, (n, c) => n.b.node('GlobalAveragePool', [c])),
    inShape: [2, 4, 6, 6],
  },
  {
    check: 'qdq',
    name: 'Gemm and MatMul (compute) around Flatten (move)',
    model: () => {
      const n = new Net(6);
      const b = n.b;
      const f = b.node('Flatten', [n.conv(b.input('x', [2, 4, 3, 3]), 4, 4)], { axis: 1 }); // [2,36]
      const g = b.node('Gemm', [f, n.w([10, 36]), n.w([10], 0.1)], { transB: 1 });
      return n.out(b.node('MatMul', [g, n.w([10, 5])], {}, { output: 'y' }));
    },
    inShape: [2, 4, 3, 3],
  },
  {
    check: 'fp16',
    name: 'float Cast targets and Resize scales',
    model: () => between(7, (n, c) => {
      const b = n.b;
      const back = b.node('Cast', [b.node('Cast', [b.node('Mul', [c, b.init('k', floatTensor([], [4]))])], { to: DataType.INT32 })], { to: DataType.FLOAT });
      return b.node('Resize', [b.node('Add', [c, back]), '', b.init('scales', floatTensor([4], [1, 1, 2, 2]))], { mode: 'linear' });
    }),
    inShape: [2, 4, 6, 6],
  },
  {
    check: 'fp16',
    name: 'Upsample scales (opset 9)',
    model: () => between(8, (n, c) => n.b.node('Upsample', [c, n.b.init('scales', floatTensor([4], [1, 1, 2, 2]))], { mode: 'nearest' }), 9),
    inShape: [2, 4, 6, 6],
  },
];
