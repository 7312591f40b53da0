/**
 * Gradient rules (OpDef.grad) by op type, merged into the op table by ops/registry.ts (as ops/channels.ts and
 * ops/linear.ts attach theirs). Rules emit standard ONNX nodes through GradContext (ops/types.ts); the graph-level
 * reverse pass is autodiff/backward.ts. Each rule has a finite-difference test in test/grad_*.test.ts.
 */
import type { GradRule } from '../types.js';
import { convGrad, convTransposeGrad } from './conv.js';
import * as el from './elementwise.js';
import { gemmGrad, matmulGrad } from './linear.js';
import { rmsNormGrad } from './norm.js';
import * as rd from './reduce.js';
import { resizeGrad } from './resize.js';
import * as sh from './shape.js';

export const GRAD_RULES: Record<string, GradRule> = {
  Conv: convGrad,
  ConvTranspose: convTransposeGrad,
  Gemm: gemmGrad,
  MatMul: matmulGrad,
  Add: el.addGrad,
  Sub: el.subGrad,
  Mul: el.mulGrad,
  Div: el.divGrad,
  Pow: el.powGrad,
  Sum: el.sumGrad,
  Mean: el.meanGrad,
  Identity: el.identityGrad,
  Cast: el.castGrad,
  Dropout: el.identityGrad,
  Neg: el.negGrad,
  Relu: el.reluGrad,
  LeakyRelu: el.leakyReluGrad,
  Elu: el.eluGrad,
  Sigmoid: el.sigmoidGrad,
  Tanh: el.tanhGrad,
  Exp: el.expGrad,
  Log: el.logGrad,
  Sqrt: el.sqrtGrad,
  Reciprocal: el.reciprocalGrad,
  Abs: el.absGrad,
  Softplus: el.softplusGrad,
  Atan: el.atanGrad,
  Min: el.minMaxGrad,
  Max: el.minMaxGrad,
  Erf: el.erfGrad,
  Gelu: el.geluGrad,
  HardSigmoid: el.hardSigmoidGrad,
  HardSwish: el.hardSwishGrad,
  Clip: el.clipGrad,
  Where: el.whereGrad,
  Reshape: sh.reshapeGrad,
  Flatten: sh.reshapeGrad,
  Squeeze: sh.reshapeGrad,
  Unsqueeze: sh.reshapeGrad,
  Transpose: sh.transposeGrad,
  Expand: sh.expandGrad,
  Tile: sh.tileGrad,
  Concat: sh.concatGrad,
  Split: sh.splitGrad,
  Slice: sh.sliceGrad,
  Pad: sh.padGrad,
  Gather: sh.gatherGrad,
  Trilu: sh.triluGrad,
  CumSum: sh.cumSumGrad,
  ReduceSum: rd.reduceSumGrad,
  ReduceMean: rd.reduceMeanGrad,
  Softmax: rd.softmaxGrad,
  LogSoftmax: rd.logSoftmaxGrad,
  GlobalAveragePool: rd.globalAveragePoolGrad,
  GlobalMaxPool: rd.globalMaxPoolGrad,
  MaxPool: rd.maxPoolGrad,
  AveragePool: rd.averagePoolGrad,
  BatchNormalization: rd.batchNormGrad,
  LayerNormalization: rd.layerNormGrad,
  RMSNormalization: rmsNormGrad,
  SimplifiedLayerNormalization: rmsNormGrad,
  Resize: resizeGrad,
};
