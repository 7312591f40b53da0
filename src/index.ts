/** onnx-shears: the curated public API. */
export { ShearsError } from './errors.js';
export { DataType, dtypeName } from './ir/dtype.js';
export type { Attr, Dim, Graph, Model, Node, OpsetImport, TensorType, ValueInfo } from './ir/graph.js';
export { attrFloat, attrInt, attrInts, attrString, opsetVersion } from './ir/graph.js';
export type { Tensor, TensorData } from './ir/tensor.js';
export { createTensor, floatTensor, int64Tensor, numel, toFloat32, toNumbers } from './ir/tensor.js';
export { GraphBuilder, F } from './ir/builder.js';
export { GraphIndex, checkGraph, insertNodes, removeDeadNodes, replaceAllUses, topoSort, uniqueName } from './ir/edit.js';
export { loadModel, parseModel, saveModel, type LoadOptions, type SaveOptions } from './onnx/io.js';
export { decodeModel, encodeModel } from './onnx/codec.js';
export { createSession, type Runner, type SessionConfig } from './runtime/session.js';
export { inferShapes, type ShapeInfo, type ShapeOptions } from './analysis/shapes.js';
export { simplify, type SimplifyOptions, type SimplifyResult } from './analysis/simplify.js';
export { analyzeCost, type CostReport, type LayerCost } from './analysis/cost.js';
export { inspectModel, type InspectReport } from './analysis/inspect.js';
export { opDef, weightSpec } from './ops/registry.js';
export type { OpDef, WeightSpec } from './ops/types.js';
export {
  MASKS_KEY, applyMasks, customMask, dropStaleMasks, getMask, getMasks, lampScores, modelSizes, modelSparsity, nmViolations,
  parsePattern, pruneUnstructured, removeMasks, selectSmallest, setMasks, structuredMask,
  type LayerPruneResult, type LayerSparsity, type ModelSparsity, type NMPattern, type PruneReport, type StructuredMaskOptions,
  type UnstructuredOptions,
} from './sparsity/index.js';
export {
  Dataset, openDataset, openSource, parseDataSpec, readPreprocess, writePreprocess, preprocessFor, preprocessFromFlags,
  preprocessFromJSON, preprocessToJSON, PREPROCESS_KEY, sampleIndices,
  type Batch, type BatchOptions, type PreprocessFlags, type PreprocessSpec, type Source,
} from './data/index.js';
export { evaluate, type EvalOptions, type EvalReport } from './metrics/evaluate.js';
export { AccuracyMeter, type AccuracyReport } from './metrics/accuracy.js';
export { FidelityMeter, type OutputFidelity } from './metrics/fidelity.js';
