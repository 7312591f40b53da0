/**
 * What a running pipeline tells its caller. Every event names the step (its kind and its index in the recipe;
 * 'pipeline' for the run as a whole). Messages may name options as `{step.key}` (formatMessage writes them as
 * keys; the CLI writes them as flags).
 */
import type { EvalReport } from '../metrics/evaluate.js';
import type { StepKind } from './steps.js';

interface Where {
  step: StepKind | 'pipeline';
  /** Index of the step in the recipe (-1 for the pipeline). */
  index: number;
}

export type PipelineEvent =
  /** A step begins. */
  | (Where & { type: 'start' })
  /** A line worth showing (what a step did). */
  | (Where & { type: 'info'; message: string })
  /** Something worth a look that is not an error. */
  | (Where & { type: 'warning'; message: string })
  /** Progress of a long part of a step (worth one rewritten line on a terminal). */
  | (Where & { type: 'progress'; message: string; done: number; total: number })
  /**
   * A model that should work (the dense original) was scored; a caller may warn when it scores near chance
   * (the preprocessing is then the likely problem).
   */
  | (Where & { type: 'scored'; what: string; report: EvalReport });

/** An event as a step emits it (the conductor adds where it comes from). */
export type EventBody = { [T in PipelineEvent['type']]: Omit<Extract<PipelineEvent, { type: T }>, 'step' | 'index'> }[PipelineEvent['type']];

/** An event's message with option references written as `name(key)` (default: the key itself). */
export function formatMessage(message: string, name: (key: string) => string = (k) => k): string {
  return message.replace(/\{([\w.]+)\}/g, (_, k: string) => name(k));
}
