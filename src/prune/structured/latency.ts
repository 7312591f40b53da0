/**
 * --target-latency F: keep F of the measured onnxruntime latency. The MAC target is searched by bisection,
 * each candidate pruned and timed (same batch, threads and input shapes as the dense model).
 */
import { ShearsError } from '../../errors.js';
import type { Model } from '../../ir/graph.js';
import { measureLatency, type LatencyOptions } from '../../metrics/latency.js';
import { pruneStructured, type StructuredOptions, type StructuredResult } from './index.js';

export interface LatencyTargetResult extends StructuredResult {
  latency: { dense: number; pruned: number; ratio: number; macsTarget: number; tries: { macs: number; latency: number }[] };
}

export async function pruneToLatency(model: Model, target: number, opts: StructuredOptions, bench: LatencyOptions): Promise<LatencyTargetResult> {
  if (!(target > 0 && target <= 1)) throw new ShearsError('the latency target must be in (0, 1]');
  const say = opts.progress ?? (() => {});
  const b: LatencyOptions = { warmup: 3, runs: 15, ...bench };
  const dense = (await measureLatency(model, b)).median;
  say(`dense latency ${dense.toFixed(2)} ms`);
  let lo = 0.05, hi = 1;
  let best: { res: StructuredResult; lat: number; m: number } | undefined;
  const tries: { macs: number; latency: number }[] = [];
  let m = Math.min(1, target);
  for (let i = 0; i < 7; i++) {
    const { ratio: _r, targetParams: _p, ...rest } = opts;
    const res = pruneStructured(model, { ...rest, targetMacs: m });
    const lat = (await measureLatency(res.model, b)).median;
    tries.push({ macs: res.report.macsRatio, latency: lat / dense });
    say(`MACs ${(res.report.macsRatio * 100).toFixed(1)}% -> latency ${((lat / dense) * 100).toFixed(1)}% of dense`);
    if (lat <= target * dense) {
      if (!best || m > best.m) best = { res, lat, m };
      lo = m;
    } else hi = m;
    if (hi - lo < 0.02) break;
    m = (lo + hi) / 2;
  }
  if (!best) {
    const { ratio: _r, targetParams: _p, ...rest } = opts;
    const res = pruneStructured(model, { ...rest, targetMacs: lo });
    const lat = (await measureLatency(res.model, b)).median;
    best = { res, lat, m: lo };
  }
  return { ...best.res, latency: { dense, pruned: best.lat, ratio: best.lat / dense, macsTarget: best.m, tries } };
}
