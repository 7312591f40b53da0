/** Quantization: static int8 QDQ (calibrated), dynamic int8, fp16, weight-only int4 (MatMulNBits). */
export { calibrate, entropyThreshold, percentileRange, type Calibrator, type CalibrationData, type CalibrationOptions, type TensorRange } from './calibrate.js';
export {
  activationParams, dequantizeValue, fakeQuant, quantizeBias, quantizeValue, quantizeWeight, roundHalfEven,
  type QParams, type QType, type WeightQuant,
} from './math.js';
export { applyQdq, planQdq, quantizeStatic, type QdqPlan, type QuantReport, type StaticQuantOptions } from './qdq.js';
export { layerSensitivity } from './sensitivity.js';
export { optimizedOpTypes, type FusionReport } from './fusion.js';
export { datasetCalibration, randomCalibration } from './data.js';
