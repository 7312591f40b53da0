/**
 * Fine-tuning a multi-input model (a sample-rate scalar, a state input, a second constant tensor): the trainer
 * feeds one input, the data set's, so every other input is pinned to its constant feed for the training run (an
 * initializer of the input's name: the input's default value, never trained) and unpinned in the result, which
 * keeps the model's interface. Per-sample feeds and carried state are refused: a training batch is a set of
 * independent samples, and a value that changes with the batch size cannot be pinned to one value.
 */
import { ShearsError } from '../errors.js';
import { feedTensor, modelInputs, planInputs, type Feeds, type InputPlan } from '../data/feeds.js';
import { cloneModel } from '../ir/clone.js';
import type { Model } from '../ir/graph.js';

export interface PinnedFeeds {
  /** The model with every fed input pinned (a copy; `model` itself when it has one input). */
  model: Model;
  /** The pinned input names (empty when nothing was pinned). */
  pinned: string[];
}

/**
 * Pins the inputs of `model` that `feeds` gives constants (const:V, zeros) for training. A model with one input
 * comes back as it is. Throws a ShearsError (before any work) for carried state, per-sample feeds, inputs left
 * unfed, and feeds whose shape follows the batch (a symbolic dimension: give the feed an explicit @SHAPE).
 */
export function pinFeeds(model: Model, feeds: Feeds | undefined, what = 'the model'): PinnedFeeds {
  const fixed = pinnableFeeds(model, feeds, what);
  if (!fixed.length) return { model, pinned: [] };
  const out = cloneModel(model);
  for (const { input, spec } of fixed) out.graph.initializers.set(input.name, feedTensor(input, spec, 1));
  return { model: out, pinned: fixed.map(({ input }) => input.name) };
}

/**
 * The feeds pinFeeds would pin (none for a one-input model), checked: the refusals of pinFeeds, without copying
 * the model (a pipeline checks a fine-tuning step's feeds before its first step).
 */
export function pinnableFeeds(model: Model, feeds: Feeds | undefined, what = 'the model'): InputPlan['fixed'] {
  if (modelInputs(model).length <= 1) return [];
  const f = feeds ?? { feeds: {}, carry: [] };
  if (f.carry.length) throw new ShearsError(`fine-tuning does not carry state from call to call (--carry ${f.carry.map(([o, i]) => `${o}=${i}`).join(', ')}): training batches are independent samples; give the state input a constant feed (e.g. --feed ${f.carry[0]![1]}=zeros) and no --carry`);
  const plan = planInputs(model, f, what);
  for (const { input, spec } of plan.fixed) {
    if (spec.kind === 'data') throw new ShearsError(`--feed ${input.name}=${spec.spec}: fine-tuning takes constant feeds only (const:V, zeros) for inputs other than the data set's`);
    const symbolic = (input.type?.shape ?? []).some((d) => typeof d !== 'number' || d < 0);
    if (!spec.shape && symbolic) {
      throw new ShearsError(`--feed ${input.name}: input '${input.name}' [${(input.type?.shape ?? []).join(', ')}] has a symbolic dimension, which a training batch sets: fine-tuning pins the feed to one value, so give its shape (e.g. zeros@D1xD2...) or make the input's shape static`);
    }
    feedTensor(input, spec, 1);
  }
  return plan.fixed;
}

/** The trained model with its pinned inputs made inputs again (their initializers dropped). Modifies `model`. */
export function unpinFeeds(model: Model, pinned: readonly string[]): Model {
  for (const name of pinned) {
    model.graph.initializers.delete(name);
    if (!model.graph.inputs.some((i) => i.name === name)) throw new ShearsError(`internal: pinned input '${name}' is no longer an input of the trained model`);
  }
  return model;
}
