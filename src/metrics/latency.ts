/**
 * Honest onnxruntime latency: the model as it is (no extra outputs), static input shapes written into the
 * model (symbolic dims = batch, or --input-shape), seeded random inputs, warm-up runs, then timed runs.
 */
import { ShearsError } from '../errors.js';
import { platform } from '../fs/platform.js';
import { DataType } from '../ir/dtype.js';
import type { Dim, Model } from '../ir/graph.js';
import { createSession, type OrtTensor } from '../runtime/session.js';
import { toOrt } from '../runtime/session.js';
import { createTensor, type Tensor } from '../ir/tensor.js';
import { fillTiled, rng } from '../random.js';
import { feedTensor, type Feeds } from '../data/feeds.js';

const cpuTime = (): number | undefined => platform().cpuTime?.();

export interface LatencyOptions {
  batch?: number;
  threads?: number;
  warmup?: number;
  runs?: number;
  inputShapes?: Record<string, Dim[]>;
  /** Feeds of inputs that take a constant (a sample rate, a zero state) instead of random values. */
  feeds?: Feeds;
  /**
   * Stop a model's timed runs early once its median has settled: when a majority of its runs (more than half)
   * lie within this fraction of the median of each other (CPU time at one thread, else wall time), after at
   * least `minRuns` runs; `runs` is then the most. Default: every model runs `runs` times.
   */
  settle?: number;
  /** Runs before the settle rule applies (default 2). */
  minRuns?: number;
  /**
   * Each timed run of a model comes right after one untimed run of it (interleaved with others, it is timed with
   * its weights and inputs in cache, as a layer inside a whole model finds them).
   */
  rewarm?: boolean;
}

export interface LatencyResult {
  /** Milliseconds. */
  median: number;
  p90: number;
  mean: number;
  min: number;
  /**
   * Median process CPU time per run (user + system, ms). With threads 1 it measures the work the kernels do
   * and is much less disturbed than wall time when other processes share the cores.
   */
  cpuMedian: number;
  /** Timed runs made (fewer than asked where `settle` stopped early). */
  runs: number;
  warmup: number;
  batch: number;
  threads: number | null;
  inputShapes: Record<string, number[]>;
}


/** The static shapes the benchmark feeds, and a copy of the model whose inputs declare them. */
export function benchShapes(model: Model, opts: LatencyOptions): { model: Model; shapes: Record<string, number[]> } {
  const batch = opts.batch ?? 1;
  const shapes: Record<string, number[]> = {};
  const g = model.graph;
  const inputs = g.inputs.filter((i) => !g.initializers.has(i.name)).map((vi) => {
    const given = opts.inputShapes?.[vi.name];
    const decl = given ?? vi.type?.shape;
    if (!decl) throw new ShearsError(`input '${vi.name}' has no declared shape; give --input-shape ${vi.name}=...`);
    const s = decl.map((d) => (typeof d === 'number' && d > 0 ? d : batch));
    shapes[vi.name] = s;
    return { ...vi, type: { elemType: vi.type?.elemType ?? DataType.FLOAT, shape: s } };
  });
  const others = g.inputs.filter((i) => g.initializers.has(i.name));
  return { model: { ...model, graph: { ...g, inputs: [...inputs, ...others] } }, shapes };
}

function randomInput(elemType: number, dims: number[], r: () => number): Tensor {
  const t = createTensor(elemType, dims);
  if (t.data instanceof Float32Array || t.data instanceof Float64Array) fillTiled(t.data, r);
  return t;
}

/**
 * Whether timed runs `xs` have settled: more than half of them lie within `tol` of their median of each other
 * (a window of floor(n/2)+1 sorted runs spanning at most tol x the median; the median lies in any such window).
 * One slow run among three (a page-faulting second run, another process) does not hold the figure back.
 */
export function hasSettled(xs: readonly number[], tol: number): boolean {
  const n = xs.length;
  if (n === 0) return false;
  const s = [...xs].sort((a, b) => a - b);
  const med = s[Math.floor(n / 2)]!;
  const k = Math.floor(n / 2) + 1;
  for (let i = 0; i + k <= n; i++) if (s[i + k - 1]! - s[i]! <= tol * med) return true;
  return false;
}

export async function measureLatency(model: Model, opts: LatencyOptions = {}): Promise<LatencyResult> {
  return (await measureLatencies([model], opts))[0]!;
}

/**
 * Latency of several models measured interleaved: every timed round runs each model once, in turn, so that all
 * of them see the same machine load (what a comparison needs on a shared machine). Sessions stay open for the
 * whole measurement.
 */
export async function measureLatencies(models: Model[], opts: LatencyOptions = {}): Promise<LatencyResult[]> {
  const warmup = opts.warmup ?? 5;
  const runs = opts.runs ?? 20;
  if (!(runs >= 1)) throw new ShearsError('--runs must be at least 1');
  const prepared: { sess: Awaited<ReturnType<typeof createSession>>; feeds: Record<string, OrtTensor>; shapes: Record<string, number[]> }[] = [];
  try {
    for (const model of models) {
      const { model: m, shapes } = benchShapes(model, opts);
      const sess = await createSession(m, opts.threads ? { threads: opts.threads } : {});
      const r = rng(1);
      const feeds: Record<string, OrtTensor> = {};
      for (const vi of m.graph.inputs) {
        const s = shapes[vi.name];
        if (!s) continue;
        const fed = opts.feeds?.feeds[vi.name];
        feeds[vi.name] = toOrt(fed && fed.kind !== 'data' ? feedTensor({ ...vi, type: { elemType: vi.type?.elemType ?? DataType.FLOAT, shape: s } }, fed, s[0] ?? 1) : randomInput(vi.type?.elemType ?? DataType.FLOAT, s, r));
      }
      prepared.push({ sess, feeds, shapes });
    }
    for (const p of prepared) for (let i = 0; i < warmup; i++) await p.sess.runRaw(p.feeds);
    const times = prepared.map(() => [] as number[]);
    const cpu = prepared.map(() => [] as number[]);
    const settle = opts.settle;
    const minRuns = Math.max(1, Math.min(runs, opts.minRuns ?? 2));
    const settled = prepared.map(() => false);
    // the figure kept: CPU time at one thread (where the platform tells it), else wall time
    const byCpu = opts.threads === 1 && cpuTime() !== undefined;
    const kept = (k: number) => (byCpu ? cpu[k]! : times[k]!);
    for (let i = 0; i < runs; i++) {
      for (let k = 0; k < prepared.length; k++) {
        if (settled[k]) continue;
        if (opts.rewarm && prepared.length > 1) await prepared[k]!.sess.runRaw(prepared[k]!.feeds);
        const c0 = cpuTime();
        const t0 = performance.now();
        await prepared[k]!.sess.runRaw(prepared[k]!.feeds);
        const wall = performance.now() - t0;
        times[k]!.push(wall);
        // CPU time from the platform; a host that cannot tell it (a browser) reports the wall time
        cpu[k]!.push(c0 === undefined ? wall : (cpuTime()! - c0) / 1000);
        if (settle !== undefined && i + 1 >= minRuns) settled[k] = hasSettled(kept(k), settle);
      }
      if (settled.every(Boolean)) break;
    }
    return prepared.map((p, k) => {
      const t = times[k]!.sort((a, b) => a - b);
      const c = cpu[k]!.sort((a, b) => a - b);
      const q = (f: number) => t[Math.min(t.length - 1, Math.floor(f * t.length))]!;
      const median = t.length % 2 ? t[(t.length - 1) / 2]! : (t[t.length / 2 - 1]! + t[t.length / 2]!) / 2;
      return {
        median,
        p90: q(0.9),
        mean: t.reduce((a, b) => a + b, 0) / t.length,
        min: t[0]!,
        cpuMedian: c[Math.floor(c.length / 2)]!,
        runs: t.length,
        warmup,
        batch: opts.batch ?? 1,
        threads: opts.threads ?? null,
        inputShapes: p.shapes,
      };
    });
  } finally {
    for (const p of prepared) await p.sess.release();
  }
}
