/**
 * Relative mean squared error of outputs against reference outputs, sum((y - ref)^2) / sum(ref^2), from the two
 * sums over whatever the caller compares (every output of a batch, a validation set, a layer's calibration
 * data): the one definition behind fidelity, quantization sensitivity, match-teacher validation and repair.
 */

/** sqDiff / sqRef; without reference energy, 0 when identical and Infinity otherwise. */
export function relMse(sqDiff: number, sqRef: number): number {
  return sqRef > 0 ? sqDiff / sqRef : sqDiff === 0 ? 0 : Infinity;
}
