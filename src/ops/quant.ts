/**
 * Quantization boundary ops: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear (shape of X; dtype from
 * the zero point / scale / output_dtype). The quantized compute ops live with their float families
 * (QLinearConv in conv.ts, QLinearMatMul and MatMulInteger in gemm.ts).
 */
import { DataType } from '../ir/dtype.js';
import { attrInt } from '../ir/graph.js';
import type { OpDef } from './types.js';
import { flopsPerOutput } from './cost.js';
import { tt } from './shape-rules.js';

export const QUANT_OPS = {
  QuantizeLinear: {
    infer(ctx) {
      const x = ctx.input(0);
      const outDtype = attrInt(ctx.node, 'output_dtype', 0);
      const dtype = ctx.input(2)?.elemType ?? (outDtype !== 0 ? outDtype : DataType.UINT8);
      return [tt(dtype, x?.shape)];
    },
    cost: flopsPerOutput(2),
    quantized: true,
  },
  DequantizeLinear: {
    infer(ctx) {
      const x = ctx.input(0);
      const dtype = ctx.input(1)?.elemType ?? DataType.FLOAT;
      return [tt(dtype, x?.shape)];
    },
    cost: flopsPerOutput(2),
    dequantizes: true,
  },
  DynamicQuantizeLinear: {
    infer(ctx) {
      const x = ctx.input(0);
      return [tt(DataType.UINT8, x?.shape), tt(DataType.FLOAT, []), tt(DataType.UINT8, [])];
    },
    cost: flopsPerOutput(3),
    quantized: true,
  },
} satisfies Record<string, OpDef>;

/**
 * Ops of onnxruntime's contrib domain (com.microsoft) that compute on quantized tensors: what onnxruntime's own
 * quantization tools and its graph optimiser write (MatMulNBits, QGemm, DynamicQuantizeMatMul, ...).
 */
export const CONTRIB_QUANTIZED_OPS: ReadonlySet<string> = new Set([
  'MatMulNBits', 'DynamicQuantizeMatMul', 'MatMulIntegerToFloat', 'QGemm', 'QAttention', 'QLinearAdd', 'QLinearMul',
  'QLinearConcat', 'QLinearConv', 'QLinearGlobalAveragePool', 'QLinearAveragePool', 'QLinearSigmoid', 'QLinearLeakyRelu',
  'QLinearSoftmax', 'QLinearWhere', 'QLinearReduceMean', 'QuantizeLinear', 'DequantizeLinear', 'GatherBlockQuantized', 'MatMulBnb4',
]);
