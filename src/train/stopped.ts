/** The stop of a training run on request: apart from checkpoint.ts (files), so the pipeline needs no Node module for it. */
/** finetune() stopped on request (FinetuneOptions.signal) at a step boundary. */
export class TrainingStopped extends Error {
  /** Whole epochs done, and steps done in the next epoch. */
  readonly epoch: number;
  readonly step: number;
  /** The checkpoint written at the stop (FinetuneOptions.checkpoint), if any. */
  readonly checkpoint: string | undefined;
  constructor(epoch: number, step: number, checkpoint: string | undefined) {
    super(`training stopped after ${step} step(s) of epoch ${epoch + 1}${checkpoint !== undefined ? `; checkpoint written to ${checkpoint}` : ''}`);
    this.name = 'TrainingStopped';
    this.epoch = epoch;
    this.step = step;
    this.checkpoint = checkpoint;
  }
}
