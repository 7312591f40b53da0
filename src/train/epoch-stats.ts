/** What one epoch of training reports: the history a run returns and a checkpoint keeps. */

export interface EpochStats {
  epoch: number;
  trainLoss: number;
  /** Classification only. */
  trainAcc?: number;
  valAcc?: number;
  /** match-teacher: sum of squared differences from the teacher's outputs on val over the sum of their squares. */
  valRelMse?: number;
  valLoss?: number;
  seconds: number;
  imagesPerSec: number;
  lr: number;
  /** Resident memory (MiB) sampled every 50 steps: flat when nothing leaks across steps. */
  rssMiB: number[];
}
