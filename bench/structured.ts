/**
 * Structured pruning benchmark (prints JSON):
 * 1. every model in ../shared/models pruned at --target-macs 0.5 with the CLI defaults: analyse + plan + prune +
 *    save time, validity (checkGraph, onnxruntime loads and runs it, same output names and shapes), MACs ratio;
 * 2. latency speedups measured with onnxruntime-node: fmnist_resnet20 at batch 128, resnet18 at batch 1 and 32
 *    (dense and pruned timed alternately, several rounds, median of the medians).
 * Usage: node dist/bench/structured.js [--models a,b] [--no-latency] [--round-to N] [--rounds R]
 */
import { readdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { checkGraph } from '../src/ir/edit.js';
import { pruneStructured } from '../src/prune/structured/index.js';
import { DEFAULT_ROUND_TO } from '../src/pipeline/steps.js';
import { createSession } from '../src/runtime/session.js';
import { measureLatency, benchShapes } from '../src/metrics/latency.js';
import { createTensor } from '../src/ir/tensor.js';
import { toOrt } from '../src/runtime/session.js';
import type { Model } from '../src/ir/graph.js';

const SHARED = new URL('../../../shared/models/', import.meta.url).pathname;
const args = process.argv.slice(2);
const opt = (k: string) => {
  const i = args.indexOf(k);
  return i >= 0 ? args[i + 1] : undefined;
};
const roundTo = Number(opt('--round-to') ?? DEFAULT_ROUND_TO);
const rounds = Number(opt('--rounds') ?? 3);
const threads = Number(opt('--threads') ?? 1);
const only = opt('--models')?.split(',');
const dir = mkdtempSync(join(tmpdir(), 'shears-structured-'));
const log = (m: string) => process.stderr.write(`${m}\n`);

async function outputShapes(m: Model): Promise<Record<string, number[]>> {
  const { model, shapes } = benchShapes(m, { batch: 1 });
  const s = await createSession(model);
  const feeds: Record<string, ReturnType<typeof createTensor>> = {};
  for (const vi of model.graph.inputs) if (shapes[vi.name]) feeds[vi.name] = createTensor(vi.type!.elemType, shapes[vi.name]!);
  const out = await s.run(feeds);
  await s.release();
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.dims]));
}

/**
 * Dense and pruned sessions side by side, single runs alternating (so both see the same load): wall-time
 * percentiles. Under contention the low percentiles are closest to an idle machine.
 */
async function interleaved(dense: Model, pruned: Model, batch: number, n: number): Promise<Record<string, number>> {
  const a = benchShapes(dense, { batch }), b = benchShapes(pruned, { batch });
  const sa = await createSession(a.model, { threads }), sb = await createSession(b.model, { threads });
  const feeds: Record<string, ReturnType<typeof toOrt>> = {};
  for (const [k, d] of Object.entries(a.shapes)) feeds[k] = toOrt(createTensor(1, d));
  const ta: number[] = [], tb: number[] = [];
  for (let i = 0; i < 3; i++) {
    await sa.runRaw(feeds);
    await sb.runRaw(feeds);
  }
  for (let i = 0; i < n; i++) {
    let t0 = performance.now();
    await sa.runRaw(feeds);
    ta.push(performance.now() - t0);
    t0 = performance.now();
    await sb.runRaw(feeds);
    tb.push(performance.now() - t0);
  }
  await sa.release();
  await sb.release();
  const q = (v: number[], p: number) => [...v].sort((x, y) => x - y)[Math.floor(p * (v.length - 1))]!;
  const out: Record<string, number> = { runs: n };
  for (const p of [0.1, 0.25, 0.5]) {
    out[`p${p * 100}Dense`] = +q(ta, p).toFixed(3);
    out[`p${p * 100}Pruned`] = +q(tb, p).toFixed(3);
    out[`p${p * 100}Speedup`] = +(q(ta, p) / q(tb, p)).toFixed(3);
  }
  return out;
}

async function main(): Promise<void> {
  const files = readdirSync(SHARED).filter((f) => f.endsWith('.onnx') && (!only || only.some((o) => f.startsWith(o)))).sort();
  const models: unknown[] = [];
  for (const f of files) {
    const path = join(SHARED, f);
    log(`prune ${f}`);
    const t0 = performance.now();
    const model = loadModel(path);
    const t1 = performance.now();
    const res = pruneStructured(model, { targetMacs: 0.5, roundTo });
    const out = join(dir, f);
    saveModel(res.model, out);
    const t2 = performance.now();
    const problems = checkGraph(res.model.graph);
    let shapesOk = false, runs = false, error: string | undefined;
    try {
      const a = await outputShapes(model);
      const b = await outputShapes(loadModel(out));
      runs = true;
      shapesOk = JSON.stringify(a) === JSON.stringify(b);
    } catch (e) {
      error = (e as Error).message;
    }
    const frozenReasons: Record<string, number> = {};
    for (const fr of res.report.frozen) {
      const k = fr.reason.replace(/'[^']*'/g, "'…'");
      frozenReasons[k] = (frozenReasons[k] ?? 0) + 1;
    }
    models.push({
      model: f,
      valid: problems.length === 0,
      runs,
      sameOutputShapes: shapesOk,
      ...(error ? { error } : {}),
      macsRatio: +res.report.macsRatio.toFixed(4),
      withinTwoPercent: Math.abs(res.report.macsRatio - 0.5) <= 0.01,
      paramsRatio: +res.report.paramsRatio.toFixed(4),
      macs: [res.report.before.macs, res.report.after.macs],
      params: [res.report.before.params, res.report.after.params],
      removedChannels: res.report.removedChannels,
      prunableChannels: res.report.prunableChannels,
      loadMs: Math.round(t1 - t0),
      analysePlanPruneSaveMs: Math.round(t2 - t1),
      stagesMs: res.report.timings,
      frozenReasons,
    });
  }
  const latency: unknown[] = [];
  if (!args.includes('--no-latency')) {
    const cases: { model: string; batch: number }[] = [
      { model: 'fmnist_resnet20.onnx', batch: 128 },
      { model: 'resnet18.onnx', batch: 1 },
      { model: 'resnet18.onnx', batch: 32 },
    ];
    for (const c of cases) {
      if (only && !only.some((o) => c.model.startsWith(o))) continue;
      const dense = loadModel(join(SHARED, c.model));
      const pruned = loadModel(join(dir, c.model));
      log(`latency ${c.model} batch ${c.batch}`);
      const runsN = c.batch >= 32 ? 5 : 20;
      const d: number[] = [], p: number[] = [], dc: number[] = [], pc: number[] = [], dm: number[] = [], pm: number[] = [];
      const b = { batch: c.batch, warmup: 2, runs: runsN, threads };
      for (let r = 0; r < rounds; r++) {
        const x = await measureLatency(dense, b);
        const y = await measureLatency(pruned, b);
        d.push(x.median); dc.push(x.cpuMedian); dm.push(x.min);
        p.push(y.median); pc.push(y.cpuMedian); pm.push(y.min);
      }
      const med = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
      latency.push({
        model: c.model, batch: c.batch, roundTo, threads,
        wall: { denseMs: +med(d).toFixed(3), prunedMs: +med(p).toFixed(3), speedup: +(med(d) / med(p)).toFixed(3) },
        wallMin: { denseMs: +Math.min(...dm).toFixed(3), prunedMs: +Math.min(...pm).toFixed(3), speedup: +(Math.min(...dm) / Math.min(...pm)).toFixed(3) },
        cpu: { denseMs: +med(dc).toFixed(3), prunedMs: +med(pc).toFixed(3), speedup: +(med(dc) / med(pc)).toFixed(3) },
        interleaved: await interleaved(dense, pruned, c.batch, c.batch >= 32 ? 15 : 60),
        loadAverage: (await import('node:os')).loadavg()[0],
      });
    }
  }
  process.stdout.write(`${JSON.stringify({ roundTo, models, latency }, null, 1)}\n`);
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exitCode = 1;
});
