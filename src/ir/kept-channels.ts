/**
 * The `shears.kept_channels` metadata of a structurally pruned model: per layer with a spatial kernel (a
 * convolution), the original model's indices of the output channels it kept, composed over repeated prunings.
 * Written by the pruning surgery (prune/structured/surgery.ts), read by BatchNorm re-insertion (train/bn.ts).
 */
import type { Model } from './graph.js';

export const KEPT_CHANNELS_KEY = 'shears.kept_channels';

/** The record of `model` (empty when absent or unreadable). */
export function readKeptChannels(model: Model): Record<string, number[]> {
  try {
    const v = JSON.parse(model.metadata.get(KEPT_CHANNELS_KEY) ?? '{}') as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, number[]>) : {};
  } catch {
    return {};
  }
}
