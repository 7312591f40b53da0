/** Training-free repair: statistics correction, least squares, OBS/SparseGPT, Wanda. */
export { repair, editableCopy, matchOutputChannels, REPAIR_METHODS, type LayerRepair, type RepairMethod, type RepairOptions, type RepairReport } from './repair.js';
export { buildStatsModel, collectStats, type LayerPair, type LayerStats, type StatsWanted } from './calib.js';
export { leastSquares, obsPrune, statsCorrect, wandaPrune, type GroupProblem, type MaskRule } from './solve.js';
