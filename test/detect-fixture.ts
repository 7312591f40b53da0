/**
 * A small YOLOv8-like detector built with the GraphBuilder (random weights): a stem, a C2f block (1x1 conv, Split,
 * a bottleneck on the second half, Concat of all three, 1x1 conv), a stride-2 conv, an FPN step (Resize x2 +
 * Concat), two detection scales with box (4 x R bins) and class towers, per-scale Concat + Reshape, the anchors
 * concatenated into the pre-decode head [N, 4R + nc, A], and Ultralytics' export decoding: Split, DFL (Reshape,
 * Transpose, Softmax, 1x1 conv with weights 0..R-1), distances to boxes (cx, cy, w, h) x stride, Sigmoid scores.
 * Output 'output0' [N, 4 + nc, A].
 */
import { GraphBuilder } from '../src/ir/builder.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/graph.js';
import { floatTensor, int64Tensor, numel } from '../src/ir/tensor.js';
import { rng } from './gradcheck.js';

export const DET_BINS = 4;
export const DET_CLASSES = 2;
export const DET_SIZE = 32;
export const DET_RAW = 'head/raw';

export function yoloFixture(opts: { batch?: number | string; seed?: number } = {}): Model {
  const r = rng(opts.seed ?? 5);
  const b = new GraphBuilder('yolo_fixture');
  const R = DET_BINS, nc = DET_CLASSES, S = DET_SIZE;
  const f = (dims: number[], s: number) => b.init(`w${b.fresh('')}`, floatTensor(dims, Float32Array.from({ length: numel(dims) }, () => (r() - 0.5) * s)));
  const I = (v: number[]) => b.init(`i${b.fresh('')}`, int64Tensor([v.length], v));
  let convs = 0;
  /** Conv (with bias) + SiLU unless `act` is false. */
  const conv = (x: string, cin: number, cout: number, k: number, stride = 1, act = true, name?: string): string => {
    const p = (k - 1) / 2;
    const y = b.node('Conv', [x, f([cout, cin, k, k], 2 / Math.sqrt(cin * k * k)), f([cout], 0.2)], { kernel_shape: [k, k], strides: [stride, stride], pads: [p, p, p, p] }, { name: name ?? `conv${convs++}` });
    return act ? b.node('Mul', [y, b.node('Sigmoid', [y])]) : y;
  };
  b.input('images', [opts.batch ?? 1, 3, S, S]);
  const stem = conv('images', 3, 8, 3, 2); // [8, 16, 16]
  // C2f: cv1 -> Split -> bottleneck(second half) -> Concat(a, b, m) -> cv2
  const c1 = conv(stem, 8, 16, 1);
  const [ha, hb] = b.nodeN('Split', [c1, I([8, 8])], { axis: 1 }, 2) as [string, string];
  const m = b.node('Add', [hb, conv(conv(hb, 8, 8, 3), 8, 8, 3)]);
  const p1 = conv(b.node('Concat', [ha, hb, m], { axis: 1 }), 24, 16, 1); // [16, 16, 16]
  const p2 = conv(p1, 16, 16, 3, 2); // [16, 8, 8]
  // neck: Resize x2 + Concat
  const up = b.node('Resize', [p2, '', b.init('scales', floatTensor([4], [1, 1, 2, 2]))], { mode: 'nearest' });
  const n1 = conv(b.node('Concat', [up, p1], { axis: 1 }), 32, 16, 1); // [16, 16, 16]
  const scales: [string, number][] = [[n1, 16], [p2, 8]];
  const perScale = scales.map(([x, hw], i) => {
    const box = conv(conv(x, 16, 16, 3), 16, 4 * R, 1, 1, false, `head/box${i}`);
    const cls = conv(conv(x, 16, 16, 3), 16, nc, 1, 1, false, `head/cls${i}`);
    return b.node('Reshape', [b.node('Concat', [box, cls], { axis: 1 }), I([0, 4 * R + nc, hw * hw])]);
  });
  const raw = b.node('Concat', perScale, { axis: 2 }, { output: DET_RAW });
  // decode
  const A = 16 * 16 + 8 * 8;
  const [dist, logits] = b.nodeN('Split', [raw, I([4 * R, nc])], { axis: 1 }, 2) as [string, string];
  const bins = b.node('Transpose', [b.node('Reshape', [dist, I([0, 4, R, A])])], { perm: [0, 2, 1, 3] });
  const dfl = b.node('Conv', [b.node('Softmax', [bins], { axis: 1 }, { name: 'dfl/softmax' }), b.init('dfl.weight', floatTensor([1, R, 1, 1], Array.from({ length: R }, (_, i) => i)))], { kernel_shape: [1, 1] }, { name: 'dfl/conv' });
  const d = b.node('Reshape', [dfl, I([0, 4, A])]);
  const [lt, rb] = b.nodeN('Split', [d, I([2, 2])], { axis: 1 }, 2) as [string, string];
  const anchors: number[] = [], strides: number[] = [];
  for (const [hw, st] of [[16, 2], [8, 4]] as const) {
    for (let y = 0; y < hw; y++) for (let x = 0; x < hw; x++) anchors.push(x + 0.5);
    strides.push(...Array(hw * hw).fill(st));
  }
  const ax = anchors.slice(), ay: number[] = [];
  for (const hw of [16, 8]) for (let y = 0; y < hw; y++) for (let x = 0; x < hw; x++) ay.push(y + 0.5);
  const anc = b.init('anchors', floatTensor([1, 2, A], [...ax, ...ay]));
  const x1y1 = b.node('Sub', [anc, lt]), x2y2 = b.node('Add', [anc, rb]);
  const cxy = b.node('Div', [b.node('Add', [x1y1, x2y2]), b.init('two', floatTensor([1], [2]))]);
  const wh = b.node('Sub', [x2y2, x1y1]);
  const boxes = b.node('Mul', [b.node('Concat', [cxy, wh], { axis: 1 }), b.init('strides', floatTensor([1, A], strides))]);
  b.node('Concat', [boxes, b.node('Sigmoid', [logits], {}, { name: 'scores' })], { axis: 1 }, { output: 'output0' });
  b.output('output0', [opts.batch ?? 1, 4 + nc, A]);
  return b.model(17);
}

/** Images in [0, 1] for the fixture, [n, 3, S, S]. */
export function fixtureImages(n: number, seed = 9): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n * 3 * DET_SIZE * DET_SIZE }, () => r());
}

export { DataType };
