/** Prototype: predicted (segments) vs measured latency. Usage: node dist/bench/latency-proto.js batch threads DENSE [VARIANTS...] */
import { loadModel } from '../src/onnx/io.js';
import { benchShapes, measureLatencies } from '../src/metrics/latency.js';
import { foldModel } from '../src/analysis/fold.js';
import { inferShapes } from '../src/analysis/shapes.js';
import { segmentGraph, segmentModel, segmentSignature } from '../src/plan/segments.js';
import { GraphBuilder } from '../src/ir/builder.js';
import { cpus, loadavg } from 'node:os';
import type { Model } from '../src/ir/graph.js';

const [b = '1', th = '1', ...paths] = process.argv.slice(2);
const batch = Number(b), threads = Number(th);
const sigs = new Map<string, { model: Model; idx: number }>();
const prepared: { path: string; model: Model; uses: Map<string, number> }[] = [];
for (const path of paths) {
  const { model } = benchShapes(loadModel(path), { batch });
  await foldModel(model);
  const info = inferShapes(model);
  const uses = new Map<string, number>();
  for (const s of segmentGraph(model, info)) {
    const sig = segmentSignature(model, info, s);
    uses.set(sig, (uses.get(sig) ?? 0) + 1);
    if (!sigs.has(sig)) sigs.set(sig, { model: segmentModel(model, info, s), idx: sigs.size });
  }
  prepared.push({ path, model, uses });
}
// Per-run overhead: one Identity of a small tensor.
const gb = new GraphBuilder('overhead');
const x = gb.input('x', [1, 8]);
gb.output(gb.node('Identity', [x]), [1, 8]);
const ident = gb.model();
const segModels = [...sigs.values()].map((e) => e.model);
const runs = Number(process.env.RUNS ?? 15);
const t0 = performance.now();
const res = await measureLatencies([ident, ...prepared.map((p) => p.model), ...segModels], { batch, threads, runs, warmup: 3 });
const secs = (performance.now() - t0) / 1000;
const oh = res[0]!.cpuMedian;
const wholes = res.slice(1, 1 + prepared.length);
const segT = res.slice(1 + prepared.length);
const sumOf = (p: (typeof prepared)[number], sub: number) => { let s = 0; for (const [sig, n] of p.uses) s += (segT[sigs.get(sig)!.idx]!.cpuMedian - sub) * n; return s; };
const raw = prepared.map((p) => sumOf(p, 0)), net = prepared.map((p) => sumOf(p, oh));
const f = (wholes[0]!.cpuMedian - oh) / net[0]!;
const rows = prepared.map((p, k) => {
  const meas = wholes[k]!.cpuMedian;
  const cal = oh + net[k]! * f;
  return { model: p.path.split('/').pop(), measured: +meas.toFixed(3), raw: +raw[k]!.toFixed(3), net: +(net[k]! + oh).toFixed(3), calibrated: +cal.toFixed(3), errNet: +((net[k]! + oh) / meas - 1).toFixed(3), errCal: +(cal / meas - 1).toFixed(3) };
});
console.log(JSON.stringify({ batch, threads, cpu: cpus()[0]?.model, load: loadavg()[0], overheadMs: +oh.toFixed(4), unique: sigs.size, seconds: +secs.toFixed(1), factor: +f.toFixed(3) }));
for (const r of rows) console.log(JSON.stringify(r));
