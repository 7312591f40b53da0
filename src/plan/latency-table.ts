/**
 * A measured latency table: milliseconds of small standalone graphs (timing segments, see segments.ts), keyed
 * by a hash of their signature (ops, attributes, shapes: never weight values). One table holds measurements of
 * one onnxruntime version on one CPU model at one thread count (its meta); a file written under another meta is
 * ignored, never trusted. Files are read and written through the installed platform (fs/platform.ts), models
 * are timed through the installed runtime (metrics/latency.ts), so the core stays host-neutral.
 */
import { platform } from '../fs/platform.js';
import type { Model } from '../ir/graph.js';
import { GraphBuilder } from '../ir/builder.js';
import { measureLatencies } from '../metrics/latency.js';
import { getRuntime } from '../runtime/runtime.js';

export interface LatencyTableMeta {
  /** onnxruntime package and version ('onnxruntime-node 1.20.1'). */
  runtime: string;
  cpu: string;
  threads: number;
}

export interface LatencyTableFile {
  format: 'shears.latency-table';
  version: 1;
  meta: LatencyTableMeta;
  /** Milliseconds by key. */
  entries: Record<string, number>;
}

/** A graph to time: its table key, how to build it, and optionally the time (ms) over which a reading is suspect. */
export interface TimingGraph {
  key: string;
  model: () => Model;
  bound?: () => number | undefined;
}

export interface MeasureOptions {
  /** Timed runs per graph, at most (default 10), after `warmup` (default 2); medians are kept. */
  runs?: number;
  warmup?: number;
  /**
   * A graph stops early once a majority of its runs agree within this fraction (metrics/latency.ts hasSettled;
   * default 0.03; 0: every graph runs `runs` times), after `minRuns` (default 3: two runs that agree can both be
   * slowed by the same burst of another process).
   */
  settle?: number;
  minRuns?: number;
  /** Graphs timed together (interleaved, sessions open at once; default 12). */
  chunk?: number;
  /** Each timed run after an untimed one of the same graph (metrics/latency.ts; SegmentLatency.rewarm chooses per model). */
  rewarm?: boolean;
  progress?: (message: string) => void;
}

/** 53-bit string hash (cyrb53), twice with two seeds: a 26-hex-digit key. */
export function hashKey(s: string): string {
  const h = (seed: number) => {
    let h1 = 0xdeadbeef ^ seed, h2 = 0x41c6ce57 ^ seed;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, 2654435761);
      h2 = Math.imul(h2 ^ c, 1597334677);
    }
    h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
    h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
    return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(16).padStart(14, '0');
  };
  return h(0) + h(0x9e3779b9);
}

/** The meta of measurements made now: the installed runtime's version, this CPU, `threads`. */
export function currentMeta(threads: number): LatencyTableMeta {
  const rt = getRuntime();
  return { runtime: `${rt.name} ${rt.version()}`, cpu: platform().machine().cpu, threads };
}

/** The default cache file of a meta: `<cache dir>/shears/latency-<hash>.json`, undefined where the host has no cache dir. */
export function defaultCachePath(meta: LatencyTableMeta): string | undefined {
  const p = platform();
  const dir = p.cacheDir?.();
  if (!dir) return undefined;
  return p.join(dir, 'shears', `latency-${hashKey(JSON.stringify(meta)).slice(0, 12)}.json`);
}

const sameMeta = (a: LatencyTableMeta, b: LatencyTableMeta) => a.runtime === b.runtime && a.cpu === b.cpu && a.threads === b.threads;

/** The key under which the per-run overhead (an Identity of 8 floats) is stored. */
export const OVERHEAD_KEY = 'overhead';

export class LatencyTable {
  readonly entries = new Map<string, number>();
  /** Graphs measured by this process (0 when everything came from the cache). */
  measured = 0;
  /** Why the file at `path` was not used (another runtime/CPU/thread count, unreadable), when it was not. */
  ignored: string | undefined;
  private dirty = false;
  /** Keys whose graph onnxruntime could not run, and why (not retried by this process). */
  readonly failed = new Map<string, string>();

  constructor(readonly meta: LatencyTableMeta, readonly path?: string) {}

  /** A table for `meta`, with the entries of the file at `path` when it exists and was written under the same meta. */
  static open(meta: LatencyTableMeta, path: string | undefined): LatencyTable {
    const t = new LatencyTable(meta, path);
    if (!path) return t;
    const p = platform();
    let text: string;
    try {
      const st = p.stat(path);
      text = new TextDecoder().decode(p.read(path, 0, st.size));
    } catch {
      return t; // no cache yet
    }
    try {
      const f = JSON.parse(text) as Partial<LatencyTableFile>;
      if (f.format !== 'shears.latency-table' || f.version !== 1 || !f.meta || typeof f.entries !== 'object' || f.entries === null) {
        t.ignored = 'not a shears latency table';
      } else if (!sameMeta(f.meta, meta)) {
        t.ignored = `written for ${f.meta.runtime} on ${f.meta.cpu} with ${f.meta.threads} thread(s), not ${meta.runtime} on ${meta.cpu} with ${meta.threads}`;
      } else {
        for (const [k, v] of Object.entries(f.entries)) if (typeof v === 'number' && Number.isFinite(v) && v >= 0) t.entries.set(k, v);
      }
    } catch (e) {
      t.ignored = `unreadable (${(e as Error).message})`;
    }
    return t;
  }

  get(key: string): number | undefined {
    return this.entries.get(key);
  }

  set(key: string, ms: number): void {
    this.entries.set(key, ms);
    this.dirty = true;
  }

  toJSON(): LatencyTableFile {
    return { format: 'shears.latency-table', version: 1, meta: this.meta, entries: Object.fromEntries(this.entries) };
  }

  /** Writes the file (when the table has a path, the host can write, and something new was measured). */
  save(): void {
    const p = platform();
    if (!this.path || !this.dirty || !p.writeFile) return;
    p.mkdir?.(p.dirname(this.path));
    p.writeFile(this.path, new TextEncoder().encode(JSON.stringify(this.toJSON())));
    this.dirty = false;
  }

  /**
   * Times the graphs whose keys are missing (static input shapes; random inputs), interleaved in chunks, at the
   * table's thread count. With one thread the median process CPU time per run is kept (what the kernels do,
   * little disturbed by other processes), else the median wall time.
   */
  async measure(graphs: TimingGraph[], opts: MeasureOptions = {}): Promise<void> {
    const todo = new Map<string, () => Model>();
    for (const g of graphs) if (!this.entries.has(g.key) && !this.failed.has(g.key) && !todo.has(g.key)) todo.set(g.key, g.model);
    await this.measureAll(todo, opts);
    // A graph that read slower than its bound (a narrower width of a segment over 1.5x its dense time) is timed
    // once more, after the others, and keeps the lower reading: single graphs of resnet18 at batch 1 read
    // 4-8x their time now and then (0.62 -> 4.78 ms) and moved a whole variant's prediction by 17 points.
    const again = new Map<string, () => Model>();
    const before = new Map<string, number>();
    for (const g of graphs) {
      const t = this.entries.get(g.key);
      const b = g.bound?.();
      if (todo.has(g.key) && t !== undefined && b !== undefined && t > b && !again.has(g.key)) {
        again.set(g.key, g.model);
        before.set(g.key, t);
        this.entries.delete(g.key);
      }
    }
    if (!again.size) return;
    await this.measureAll(again, opts);
    this.remeasured += again.size;
    for (const [k, t] of before) this.set(k, Math.min(t, this.entries.get(k) ?? t));
  }

  /** Graphs timed a second time because their first reading was over their bound (measure). */
  remeasured = 0;

  protected async measureAll(todo: Map<string, () => Model>, opts: MeasureOptions): Promise<void> {
    if (!this.entries.has(OVERHEAD_KEY)) todo.set(OVERHEAD_KEY, overheadModel);
    if (!todo.size) return;
    const all = [...todo];
    const parts = chunks(all, Math.max(1, opts.chunk ?? 12));
    let done = 0;
    const settle = opts.settle ?? 0.03;
    const o = { threads: this.meta.threads, runs: opts.runs ?? 10, warmup: opts.warmup ?? 2, ...(settle > 0 ? { settle, minRuns: opts.minRuns ?? 3 } : {}), ...(opts.rewarm ? { rewarm: true } : {}) };
    const keep = (k: string, r: { cpuMedian: number; median: number }) => this.set(k, this.meta.threads === 1 ? r.cpuMedian : r.median);
    for (const part of parts) {
      try {
        const res = await measureLatencies(part.map(([, m]) => m()), o);
        part.forEach(([k], j) => keep(k, res[j]!));
        this.measured += part.length;
      } catch (e) {
        // one graph onnxruntime refuses (a width its kernels do not take): the others alone; it stays unmeasured
        if (part.length === 1) {
          this.failed.set(part[0]![0], (e as Error).message);
          opts.progress?.(`latency table: a timing graph cannot be run (${(e as Error).message}); its time is estimated from MACs`);
        } else {
          for (const [k, m] of part) await this.measure([{ key: k, model: m }], { ...opts, chunk: 1 });
        }
      }
      done += part.length;
      if (part.length > 1 || done % 12 === 0 || done === all.length) opts.progress?.(`latency table: measured ${done} of ${all.length} graphs`);
    }
  }

  /** The per-run overhead of a session (ms), measured when first asked. */
  overhead(): number {
    return this.entries.get(OVERHEAD_KEY) ?? 0;
  }
}

function chunks<T>(xs: T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}

function overheadModel(): Model {
  const gb = new GraphBuilder('overhead');
  const x = gb.input('x', [1, 8]);
  gb.output(gb.node('Identity', [x]), [1, 8]);
  return gb.model();
}
