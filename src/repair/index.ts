/** Training-free repair: statistics correction, least squares, OBS/SparseGPT, Wanda. */
export { repair, matchOutputChannels, REPAIR_METHODS, type LayerRepair, type RepairMethod, type RepairOptions, type RepairReport } from './repair.js';
export { linearContext, type LayerPair, type LayerStats, type StatsWanted } from './calib.js';
export { Stepper } from './stepper.js';
export { leastSquares, obsPrune, statsCorrect, wandaPrune, type GroupProblem, type MaskRule } from './solve.js';
export { obsPruneOrt, OrtLinalg, type OrtLinalgOptions, type OrtObsOptions } from './ort-linalg.js';
