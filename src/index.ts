/** onnx-shears: the curated public API. */
export { ShearsError } from './errors.js';
export { DataType, dtypeName } from './ir/dtype.js';
export type { Attr, Dim, Graph, Model, Node, OpsetImport, TensorType, ValueInfo } from './ir/graph.js';
export { attrFloat, attrInt, attrInts, attrString, opsetVersion } from './ir/graph.js';
export type { Tensor, TensorData } from './ir/tensor.js';
export { createTensor, floatTensor, int64Tensor, numel, toFloat32, toNumbers } from './ir/tensor.js';
export { GraphBuilder, F } from './ir/builder.js';
export { GraphIndex, checkGraph, insertNodes, removeDeadNodes, replaceAllUses, topoSort, uniqueName } from './ir/edit.js';
export { loadModel, parseModel, saveModel, StreamedSave, type LoadOptions, type SaveOptions } from './onnx/io.js';
export { lazyStats, resetLazyPeak, isLazy, isResident, releaseTensor } from './ir/lazy.js';
export { decodeModel, encodeModel } from './onnx/codec.js';
export { createSession, runOnce, type Runner, type SessionConfig } from './runtime/session.js';
export { getRuntime, setRuntime, type OrtApi, type Runtime } from './runtime/runtime.js';
export { platform, setPlatform, type FileStat, type MachineInfo, type Platform } from './fs/platform.js';
export { parseModelBytes } from './onnx/parse.js';
export { inferShapes, type ShapeInfo, type ShapeOptions } from './analysis/shapes.js';
export { pinInputValues, simplify, type SimplifyOptions, type SimplifyResult } from './analysis/simplify.js';
export { foldModel, type FoldOptions, type FoldResult } from './analysis/fold.js';
export { rebatch, type RebatchResult } from './analysis/rebatch.js';
export { analyzeCost, parameterTensors, type CostReport, type LayerCost, type ParameterTensor, type SubgraphCost } from './analysis/cost.js';
export { inspectModel, type InspectReport } from './analysis/inspect.js';
export { isQuantizedNode, opDef, weightSpec, weightSpecs } from './ops/registry.js';
export type { OpDef, WeightSpec } from './ops/types.js';
export {
  MASKS_KEY, applyMasks, customMask, dropStaleMasks, getMask, getMasks, lampScores, modelSizes, modelSparsity, nmViolations,
  parsePattern, pruneUnstructured, removeMasks, selectSmallest, setMasks, structuredMask, fixedConstantReason, unmaskableWeights,
  type LayerPruneResult, type LayerSparsity, type ModelSparsity, type NMPattern, type PruneReport, type StructuredMaskOptions,
  type UnstructuredOptions,
} from './sparsity/index.js';
export { CALIBRATED_METHODS, pruneCalibrated, type CalibratedLayer, type CalibratedMethod, type CalibratedOptions, type CalibratedReport, type OwlBlock, type OwlOptions } from './prune/calibrated.js';
export { pruneLayerwise, type LayerwiseOptions } from './prune/stream.js';
export {
  Dataset, openDataset, openSource, parseDataSpec, readPreprocess, writePreprocess, preprocessFor, preprocessFromFlags,
  preprocessFromJSON, preprocessToJSON, PREPROCESS_KEY,
  type Batch, type BatchOptions, type PreprocessFlags, type PreprocessSpec, type Source,
} from './data/index.js';
export { sampleIndices } from './random.js';
export { evaluate, type EvalOptions, type EvalReport } from './metrics/evaluate.js';
export { evaluatePerplexity, formatPerplexity, nllGraph, type LMEvalReport, type PerplexityOptions, type PerplexityReport } from './metrics/perplexity.js';
export { TokenDataset, bindTokens, isTokenData, openTokens, readTokenFile, type TokenStream } from './data/tokens.js';
export {
  feedsFromArgs, feedsFromRecipe, feedsToRecipe, mergeFeeds, parseFeedSpec, planInputs, modelInputs, feedTensor, FeedState,
  type Feeds, type FeedSpec, type InputPlan,
} from './data/feeds.js';
export { AccuracyMeter, type AccuracyReport } from './metrics/accuracy.js';
export { FidelityMeter, formatSimilarity, type OutputFidelity, type ScalarFidelity } from './metrics/fidelity.js';
export {
  pruneStructured, deepenToTarget, activationStatistics, taylorGradients, type StructuredOptions, type StructuredResult, type StructuredReport, type LayerWidth,
} from './prune/structured/index.js';
export { pruneToLatency, depthUnitTimes, depthScoresPerMs, nextLandingTarget, LANDING_TOLERANCE, type LatencyTargetResult, type LatencyPlanOptions } from './prune/structured/latency.js';
export { removeUnits, sliceTensor, sliceTensorAxes } from './prune/structured/surgery.js';
export { verifyPruned, type VerifyOptions, type VerifyResult } from './prune/structured/verify.js';
export { findResidualBlocks, depthUnits, chooseUnits, chooseBlocks, removeBlocks, BLOCK_UNITS, type ResidualBlock, type DepthUnit, type BlockUnit, type BranchKind, type ChooseOptions } from './prune/structured/depth.js';
export { blockInfluence, blockLossIncrease, magnitudeRanking, cosineDistanceSum, klSum, streamAxis, DEPTH_RANK_METHODS, type DepthRanking, type DepthRankMethod, type FeedBatches, type RankOptions } from './prune/structured/influence.js';
export { analyzeModel, type Analysis, type AnalyzeOptions } from './depgraph/analyze.js';
export { buildDepGraph, keptIndices, type DepGraph, type Group, type Unit, type Space, type Frozen } from './depgraph/depgraph.js';
export { unitImportance, type ImportanceKind, type ImportanceOptions, type Aggregation } from './importance/importance.js';
export { activationStats, readScores, type ActivationStats, type LayerActivation, type ActivationOptions } from './importance/activation.js';
export { CostModel } from './plan/cost.js';
export { planStructured, unitsOfPlan, type PlanOptions, type StructuredPlan } from './plan/plan.js';
export { planBudget, planBudgetSync, type Allocation, type BudgetKind, type BudgetOptions, type GroupAllocation } from './plan/budget.js';
export type { Landing, LandingAttempt } from './plan/plan.js';
export { LatencyTable, currentMeta, defaultCachePath, type LatencyTableFile, type LatencyTableMeta } from './plan/latency-table.js';
export { SegmentLatency, fitCalibration, halfWidths, standaloneSegment, type Calibration } from './plan/latency-model.js';
export { segmentGraph, type Segment } from './plan/segments.js';
export { measureLatency, measureLatencies, type LatencyOptions, type LatencyResult } from './metrics/latency.js';
export { gatherEvidence, type EvidenceEntry, type EvidenceOptions, type EvidenceReport, type ModelEvidence, type LayerEvidence } from './report/evidence.js';
export { renderEvidenceHtml } from './report/html.js';
export { evidencePareto, paretoFront, paretoMetric, qualityOf, type ParetoLatency, type ParetoMetric, type ParetoPoint, type ParetoSummary } from './report/pareto.js';
export {
  sweep, parseTargets, checkTargets, sweepLabel, SweepStopped,
  type SweepEvent, type SweepKind, type SweepOptions, type SweepPhase, type SweepPoint, type SweepReport, type SweepVariant,
} from './pipeline/sweep.js';
export { createStepRunner, defaultReplicas, stepGraphOf, type StepGraph, type StepRunner, type StepRunnerOptions, type StepResult } from './train/step-runner.js';
export type { ChannelRule, ChannelLink, ChannelInfo, PruneRule, AxisRef } from './ops/types.js';
export type { GradContext, GradEmitter, GradRule } from './ops/types.js';
export { buildBackward, appendEmitted, type Backward, type BackwardOptions, type ValueTypes } from './autodiff/backward.js';
export { buildTrainingGraph, type TrainingGraph, type TrainingGraphOptions } from './autodiff/training.js';
export { lowerNchwc, nchwcBlock } from './autodiff/nchwc.js';
export { appendLoss, type LossSpec } from './autodiff/losses.js';
export { emitDetectLoss, DETECT_GAINS, type DetectLossSpec } from './autodiff/detect-loss.js';
export { findYoloHead, type YoloHead } from './train/yolo-head.js';
export { assignTal, ciou, decodeHead, detectionTargets, packTargets, TAL_DEFAULTS, type Assignment, type DetectionData, type GtBox, type TalOptions } from './train/tal.js';
export { probeTypes } from './autodiff/shapes.js';
export { finetune, evaluateAccuracy, type FinetuneOptions, type FinetuneResult, type Progress } from './train/trainer.js';
export { finetuneLM, type LMFinetuneOptions, type LMFinetuneResult, type LMProgress } from './train/lm.js';
export type { EpochStats } from './train/epoch-stats.js';
export { loadArrays, type ArrayData, type AugmentSpec } from './data/in-memory.js';
export { SampleStore, IN_MEMORY_MAX } from './train/store.js';
export { createOptimizer, clipGradNorm, type OptimizerSpec, type Optimizer, type ParamState } from './train/optim.js';
export { scheduleAt, parseSchedule, type ScheduleSpec } from './train/schedule.js';
export { insertBatchNorm, foldBatchNorm, decomposeBatchNormForTraining, detectFoldedBatchNorm, type FoldedBatchNorm } from './train/bn.js';
export {
  gradualMagnitudePruning, lotteryTicket, iterativeStructured, cubicSparsity,
  type GmpOptions, type LotteryOptions, type IterativeStructuredOptions, type IterativeResult, type IterativeStage,
} from './prune/iterative.js';
export {
  quantizeStatic, quantizeDynamic, quantizeInt4, convertFp16, upcastFp16, float16Tensors, calibrate, datasetCalibration, randomCalibration, planQdq, applyQdq,
  layerSensitivity, optimizedOpTypes, optimizedModel, fusionReport, sparsity24, TRT_OPTIONS, activationParams, quantizeValue, quantizeWeight, quantizeBias, fakeQuant,
  roundHalfEven, packInt4, unpackInt4, matmulsToGemm, gemmParity,
  type StaticQuantOptions, type QuantReport, type QdqPlan, type Calibrator, type CalibrationData, type CalibrationOptions,
  type DynamicQuantOptions, type Int4Options, type NmGemmOptions, type NmGemmReport, type Fp16Options, type Upcast, type FusionReport, type QParams, type QType, type Sparsity24,
} from './quant/index.js';
export type { QuantRule } from './ops/types.js';
export {
  repair, REPAIR_METHODS, matchOutputChannels,
  type LayerRepair, type RepairMethod, type RepairOptions, type RepairReport,
} from './repair/index.js';
export { obsPruneOrt, OrtLinalg, type OrtLinalgOptions, type OrtObsOptions } from './repair/ort-linalg.js';
export {
  runPipeline, PipelineStopped, type RunOptions, type PipelineResult, type PipelineReport,
} from './pipeline/run.js';
export { quantizedOps, compareFp16, FP16_TOLERANCE, type Float32Report, type Fp16Check } from './pipeline/float32.js';
export { parseRecipe, validateRecipe, formatRecipe, checkSteps, type Recipe } from './pipeline/recipe.js';
export {
  optionsOf, STEP_KINDS, PRUNE_MODES,
  type Step, type StepKind, type PruneStep, type PruneMode, type RepairStep, type ScoreStep, type FinetuneStep, type QuantizeStep,
} from './pipeline/steps.js';
export { validateTarget, type StructuredTarget } from './pipeline/target.js';
export { OptionError, describeOptionError, type OptionDef, type OptionType } from './pipeline/options.js';
export { formatMessage, type PipelineEvent } from './pipeline/events.js';
export type { OpenData } from './pipeline/context.js';
export { createRunCache, RunCache, RUN_CACHE_KINDS, type RunCacheKind } from './pipeline/cache.js';
export { finetuneChoices, type FinetuneChoices, type FinetuneSummary } from './pipeline/finetune.js';
export { findDetectHead, formatDetectHead, type DetectHead } from './analysis/detector.js';
export { detectorHead, isDetector, withDistillTarget, stripDistillTarget, DISTILL_VALUE, DETECTOR_DISTILL_LOSS, type DetectorDistillLoss } from './pipeline/detector.js';
export { emitDetectDistill, type DetectDistillSpec } from './autodiff/detect-distill.js';
export {
  DetectionMeter, DetectionFidelityMeter, IOU_THRESHOLDS, COCO_IOU_THRESHOLDS, apPerClass, apPerClassCoco, boxIou, computeAp, computeApCoco, matchGreedy, decodeDetections, decodeEnd2End, decodeYolo,
  detectionFidelity, detectionFormat, detectionMap, interp, letterboxBoxes, matchPredictions, nms, pick, unletterboxBoxes,
  type ClassAp, type DecodeOptions, type DetectionFidelity, type DetectionFormat, type DetectionReport, type Detections, type GroundTruth,
} from './metrics/detection.js';
export {
  boxesInPixels, cocoSource, findDataYaml, loadCocoDataset, loadYoloDataset, imageTruth, inputTransform, isDetectionSource, labelPathOf, parseCocoJson, parseDataYaml,
  parseYoloLabels, yoloSource, LABEL_EPSILON,
  type CocoAnnotations, type DetectionLabels, type DetectionSource, type ImageObjects, type ImageTruth, type YoloDataConfig,
} from './data/yolo.js';
export { detectorPreprocess, letterboxGeometry, letterboxImage, LETTERBOX_PAD, type Letterbox } from './data/preprocess.js';
export {
  boxesToOriginal, checkChannels, detectionOutput, detectorShape, evaluateDetection,
  type DetectionEvalOptions, type DetectionEvalReport, type ImageDetections,
} from './metrics/detection-eval.js';
