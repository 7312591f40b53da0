/** Unstructured, N:M and mask-based structured sparsity; masks stored in the model. */
export { MASKS_KEY, applyMasks, dropStaleMasks, getMask, getMasks, maskedNames, maskTensor, removeMasks, setMasks, updateMasks } from './masks.js';
export { fixedConstantReason, layerWeights, selectLayers, unmaskableWeights, type LayerFilter, type LeftOut, type PrunableLayer } from './layers.js';
export { checkPattern, nmMask, nmViolations, parsePattern, type NMPattern } from './nm.js';
export { countCandidates, dropSelected, selectSmallest, type SelectInput, type Threshold } from './select.js';
export { lampScores, pruneUnstructured, type LayerPruneResult, type Method, type PruneReport, type Scope, type UnstructuredOptions } from './unstructured.js';
export { customMask, sliceNorms, structuredMask, type StructuredMaskOptions } from './structured.js';
export { countNonzero, modelSparsity, modelSizes, type LayerSparsity, type ModelSparsity } from './stats.js';
