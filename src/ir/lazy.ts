/**
 * Lazy tensors: tensors whose elements are read from their source (a model's external data) the first time
 * `data` is read, and can be released again (the next read loads them anew). Passes never write into a tensor's
 * data (they replace tensors), so a released tensor reads back the same values. Assigning `data` pins the new
 * array: the tensor is no longer released.
 *
 * A process-wide counter tracks the bytes of lazy tensors held in memory (`lazyStats`): what a streamed pass
 * keeps resident, and what tests check it releases.
 */
import type { NumericData, Tensor } from './tensor.js';

/** Where a lazy tensor's bytes live (for writers that can refer to them instead of copying). */
export interface LazySource {
  /** The file's real path. */
  file: string;
  offset: number;
  length: number;
}

interface LazyState {
  load: () => NumericData;
  bytes: number;
  cached: NumericData | undefined;
  pinned: boolean;
  source: LazySource | undefined;
}

const STATE = Symbol('shears.lazy');

const stats = { resident: 0, peak: 0, loads: 0, releases: 0 };

/** Bytes of lazy tensors now held in memory, the most held at once since the last reset, loads and releases. */
export function lazyStats(): { resident: number; peak: number; loads: number; releases: number } {
  return { ...stats };
}

/** Starts a new peak measurement (the peak becomes what is resident now). */
export function resetLazyPeak(): void {
  stats.peak = stats.resident;
}

/**
 * A tensor of `bytes` bytes whose data `load` reads on first use; `initial`: the data, already in memory (held
 * until released, then read with `load`).
 */
export function lazyTensor(dtype: number, dims: number[], bytes: number, load: () => NumericData, source?: LazySource, initial?: NumericData): Tensor {
  const state: LazyState = { load, bytes, cached: initial, pinned: false, source };
  if (initial !== undefined) {
    stats.resident += bytes;
    if (stats.resident > stats.peak) stats.peak = stats.resident;
  }
  const t = { dtype, dims } as Tensor;
  Object.defineProperty(t, STATE, { value: state, enumerable: false });
  Object.defineProperty(t, 'data', {
    enumerable: true,
    configurable: true,
    get(): NumericData {
      if (state.cached === undefined) {
        state.cached = state.load();
        stats.resident += state.bytes;
        stats.loads++;
        if (stats.resident > stats.peak) stats.peak = stats.resident;
      }
      return state.cached;
    },
    set(v: NumericData) {
      if (state.cached !== undefined && !state.pinned) stats.resident -= state.bytes;
      state.cached = v;
      state.pinned = true;
    },
  });
  return t;
}

function stateOf(t: Tensor): LazyState | undefined {
  return (t as unknown as Record<symbol, LazyState | undefined>)[STATE];
}

export function isLazy(t: Tensor): boolean {
  return stateOf(t) !== undefined;
}

/** Whether the tensor's data is in memory (always, for a tensor that is not lazy). */
export function isResident(t: Tensor): boolean {
  const s = stateOf(t);
  return !s || s.cached !== undefined;
}

/** Drops a lazy tensor's data from memory (it is read again when used); false when there is nothing to drop. */
export function releaseTensor(t: Tensor): boolean {
  const s = stateOf(t);
  if (!s || s.pinned || s.cached === undefined) return false;
  s.cached = undefined;
  stats.resident -= s.bytes;
  stats.releases++;
  return true;
}

/** The bytes of storage a lazy tensor has (without loading it); undefined for other tensors. */
export function lazyByteLength(t: Tensor): number | undefined {
  return stateOf(t)?.bytes;
}

/** Where an unchanged lazy tensor's bytes are, if it has a file source. */
export function lazySource(t: Tensor): LazySource | undefined {
  const s = stateOf(t);
  return s && !s.pinned ? s.source : undefined;
}
