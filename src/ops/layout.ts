/**
 * Which ops onnxruntime's NCHWc transformer (nchwc_transformer.cc, Transform) keeps in the blocked layout when
 * their inputs are blocked (OpDef.nchwcKeeps), as probed on onnxruntime-node 1.30 with blocks of 16: Add, Sum
 * and Mul (every input blocked), Relu, Sigmoid and Tanh; the pools and a channel Concat only at whole blocks (a
 * MaxPool after 20 or 24 channels runs NCHW after a reorder, after 16 or 32 it stays blocked); Clip, LeakyRelu
 * and HardSigmoid only fused into the convolution they follow; BatchNormalization (a blocked depthwise 1x1
 * convolution) at whole blocks. Everything else reads NCHW.
 */
import type { NchwcLayoutContext, OpDef } from './types.js';

const keeps = (): boolean => true;
const atBlocks = (c: NchwcLayoutContext): boolean =>
  c.node.inputs.filter(Boolean).slice(0, 1).every((v) => (c.channels(v) ?? 1) % c.block === 0);
const fused = (c: NchwcLayoutContext): boolean => c.fromConv(c.node.inputs[0] ?? '');
const concat = (c: NchwcLayoutContext): boolean => {
  const a = c.node.attrs.get('axis');
  return a?.kind === 'int' && Number(a.value) === 1 && c.node.inputs.filter(Boolean).every((v) => (c.channels(v) ?? 1) % c.block === 0);
};

export const NCHWC_LAYOUT: Record<string, Pick<OpDef, 'nchwcKeeps'>> = {
  Add: { nchwcKeeps: keeps }, Sum: { nchwcKeeps: keeps }, Mul: { nchwcKeeps: keeps },
  Relu: { nchwcKeeps: keeps }, Sigmoid: { nchwcKeeps: keeps }, Tanh: { nchwcKeeps: keeps },
  Clip: { nchwcKeeps: fused }, LeakyRelu: { nchwcKeeps: fused }, HardSigmoid: { nchwcKeeps: fused },
  MaxPool: { nchwcKeeps: atBlocks }, AveragePool: { nchwcKeeps: atBlocks },
  GlobalAveragePool: { nchwcKeeps: atBlocks }, GlobalMaxPool: { nchwcKeeps: atBlocks },
  Concat: { nchwcKeeps: concat },
  BatchNormalization: { nchwcKeeps: atBlocks },
};
