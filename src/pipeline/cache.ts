/**
 * A cache of what several pipeline runs over the same dense model would otherwise compute once each (a sweep runs
 * one planning and one building pipeline per target): the data sets opened, the dense model's activation
 * statistics for activation importance (prune step), and the dense model's scores (repair and score steps).
 *
 * Every entry is keyed by everything it depends on: the dense model's identity (the Model object given to
 * runPipeline, or its reference, and whether the run works in float32), the data spec, the preprocessing, the
 * feeds and token context, the sample count and seed, the options of the computation. Nothing that depends on a
 * pruned model is kept. Models are identified by object: a model given to runPipeline with a cache must not be
 * modified while the cache is in use (runPipeline itself never modifies it).
 *
 * Without a cache (RunOptions.cache undefined) every run computes everything itself, as before.
 */

/** What the cache holds. */
export type RunCacheKind = 'data' | 'activations' | 'denseScore';

export const RUN_CACHE_KINDS: readonly RunCacheKind[] = ['data', 'activations', 'denseScore'];

export class RunCache {
  private readonly entries = new Map<string, Promise<unknown>>();
  private readonly ids = new WeakMap<object, number>();
  private nextId = 1;
  /** Lookups answered from the cache, by kind. */
  readonly hits: Record<RunCacheKind, number> = { data: 0, activations: 0, denseScore: 0 };
  /** Lookups computed (and then kept), by kind. */
  readonly misses: Record<RunCacheKind, number> = { data: 0, activations: 0, denseScore: 0 };

  /** A number naming `o` (a model) by identity while it lives. */
  idOf(o: object): number {
    let id = this.ids.get(o);
    if (id === undefined) {
      id = this.nextId++;
      this.ids.set(o, id);
    }
    return id;
  }

  /**
   * The value kept under `kind` and `key` (plain JSON: compared by its JSON text), else `compute()`'s, kept. A
   * computation that fails is forgotten (the next lookup computes again) and its error is the caller's.
   */
  get<T>(kind: RunCacheKind, key: unknown, compute: () => Promise<T>): Promise<T> {
    const k = `${kind}:${JSON.stringify(key)}`;
    const kept = this.entries.get(k);
    if (kept) {
      this.hits[kind]++;
      return kept as Promise<T>;
    }
    this.misses[kind]++;
    const p = compute();
    this.entries.set(k, p);
    p.catch(() => {
      if (this.entries.get(k) === p) this.entries.delete(k);
    });
    return p;
  }

  /** Entries kept. */
  get size(): number {
    return this.entries.size;
  }

  /** Forgets every entry (the counts stay). */
  clear(): void {
    this.entries.clear();
  }
}

/** A new, empty cache to give to several runPipeline calls over the same dense model (RunOptions.cache). */
export function createRunCache(): RunCache {
  return new RunCache();
}
