/** Quantization: static int8 QDQ (calibrated), dynamic int8, fp16, weight-only int4 (MatMulNBits). */
export { calibrate, entropyThreshold, percentileRange, type Calibrator, type CalibrationData, type CalibrationOptions, type TensorRange } from './calibrate.js';
export {
  activationParams, dequantizeValue, fakeQuant, quantizeBias, quantizeValue, quantizeWeight, roundHalfEven,
  type QParams, type QType, type WeightQuant,
} from './math.js';
export { applyQdq, planQdq, type QdqPlan, type StaticQuantOptions } from './qdq.js';
export { quantizeStatic, type QuantReport } from './static.js';
export { layerSensitivity } from './sensitivity.js';
export { fusionReport, optimizedModel, optimizedOpTypes, type FusionReport } from './fusion.js';
export { calibrationBatch, datasetCalibration, randomCalibration } from './data.js';
export { quantizeDynamic, type DynamicQuantOptions, type DynamicQuantReport } from './dynamic.js';
export { quantizeInt4, packInt4, unpackInt4, type Int4Options, type Int4Packed } from './int4.js';
export { convertFp16, float16Tensors, toHalf, upcastFp16, type Fp16Options, type Upcast } from './fp16.js';
export { matmulLayers, type MatmulLayer } from './matmul.js';
export { TRT_OPTIONS, sparsity24, type Sparsity24 } from './trt.js';
export { gemmParity, matmulsToGemm, type NmGemmOptions, type NmGemmReport } from './nm-gemm.js';
