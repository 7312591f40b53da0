/**
 * Ranking depth units (depth.ts) for removal, least important first:
 * - influence: block influence, 1 - cos(x_in, x_out) between the residual stream before and after the unit,
 *   per vector (the last axis of [N, T, D] token streams and [N, D] rows; the channel axis 1 of [N, C, H, W]
 *   feature maps, per position), averaged over every vector of the calibration batches. One onnxruntime run of
 *   the model with the stream values added as outputs.
 * - loss: the measured increase in loss when the unit alone is removed, against the dense model's own
 *   predictions (no labels): KL(dense || without the unit) of softmax over the last axis of the first output,
 *   averaged over its vectors (per token of an LM, per sample of a classifier). One run per unit.
 * - magnitude: the RMS of the unit's parameters (no data).
 */
import { ShearsError } from '../../errors.js';
import { DataType } from '../../ir/dtype.js';
import { cloneModel } from '../../ir/clone.js';
import type { Dim, Model } from '../../ir/graph.js';
import { axisLayout, toFloat32, type Tensor } from '../../ir/tensor.js';
import { inferShapes } from '../../analysis/shapes.js';
import { concreteInputShapes } from '../../depgraph/analyze.js';
import { createSession } from '../../runtime/session.js';
import { depthUnits, removeBlocks, type BlockUnit, type DepthUnit } from './depth.js';

export type DepthRankMethod = 'influence' | 'loss' | 'magnitude';
export const DEPTH_RANK_METHODS: readonly DepthRankMethod[] = ['influence', 'loss', 'magnitude'];

export interface DepthRanking {
  method: DepthRankMethod;
  unit: BlockUnit;
  /** The units in graph order, each with its score (smaller: removed first). */
  units: (DepthUnit & { rank: number })[];
  /** Scores by unit name (what chooseUnits takes). */
  scores: Map<string, number>;
  /** Calibration vectors the scores average over (influence, loss). */
  samples?: number;
}

/** Feeds of calibration batches (every model input by name). */
export type FeedBatches = Iterable<Record<string, Tensor>> | AsyncIterable<Record<string, Tensor>>;

export interface RankOptions {
  unit?: BlockUnit;
  /** Static input shapes for finding the blocks (default: the first batch's shapes). */
  inputShapes?: Record<string, Dim[]>;
  threads?: number;
}

function ranked(method: DepthRankMethod, unit: BlockUnit, units: DepthUnit[], score: (u: DepthUnit, i: number) => number, samples?: number): DepthRanking {
  const scored = units.map((u, i) => ({ ...u, score: score(u, i), rank: 0 }));
  [...scored].sort((a, b) => a.score - b.score).forEach((u, r) => (u.rank = r + 1));
  return { method, unit, units: scored, scores: new Map(scored.map((u) => [u.name, u.score])), ...(samples !== undefined ? { samples } : {}) };
}

/** Ranking by the RMS of each unit's parameters (no data). */
export function magnitudeRanking(model: Model, inputShapes: Record<string, Dim[]> = {}, unit: BlockUnit = 'block'): DepthRanking {
  return ranked('magnitude', unit, depthUnits(model, concreteInputShapes(model, inputShapes), unit), (u) => u.score);
}

async function collect(batches: FeedBatches): Promise<Record<string, Tensor>[]> {
  const out: Record<string, Tensor>[] = [];
  for await (const b of batches as AsyncIterable<Record<string, Tensor>>) out.push(b);
  if (out.length === 0) throw new ShearsError('depth ranking: no calibration batches');
  return out;
}

function shapesFor(model: Model, given: Record<string, Dim[]> | undefined, first: Record<string, Tensor>): Record<string, number[]> {
  if (given && Object.keys(given).length) return concreteInputShapes(model, given);
  const fromBatch: Record<string, Dim[]> = {};
  for (const [k, t] of Object.entries(first)) if (model.graph.inputs.some((i) => i.name === k)) fromBatch[k] = [...t.dims];
  return concreteInputShapes(model, fromBatch);
}

/** Sum over vectors of 1 - cos(a, b) along `axis`, and the vector count. */
export function cosineDistanceSum(a: Float32Array, b: Float32Array, dims: readonly number[], axis: number): { sum: number; count: number } {
  const { outer, len, inner } = axisLayout(dims, axis);
  let sum = 0;
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      let ab = 0, aa = 0, bb = 0;
      for (let c = 0, at = o * len * inner + i; c < len; c++, at += inner) {
        const x = a[at]!, y = b[at]!;
        ab += x * y;
        aa += x * x;
        bb += y * y;
      }
      const cos = aa === 0 && bb === 0 ? 1 : aa === 0 || bb === 0 ? 0 : ab / Math.sqrt(aa * bb);
      sum += 1 - cos;
    }
  }
  return { sum, count: outer * inner };
}

/** The axis block influence compares along: the last of rank <= 3 values, the channel axis of feature maps. */
export function streamAxis(rank: number): number {
  return rank <= 3 ? rank - 1 : 1;
}

/** Block influence of every depth unit over the calibration batches (see the module comment). */
export async function blockInfluence(model: Model, batches: FeedBatches, opts: RankOptions = {}): Promise<DepthRanking> {
  const unit = opts.unit ?? 'block';
  const list = await collect(batches);
  const shapes = shapesFor(model, opts.inputShapes, list[0]!);
  const units = depthUnits(model, shapes, unit);
  const types = inferShapes(model, { inputShapes: shapes }).types;
  const streams = [...new Set(units.flatMap((u) => [u.input, u.output]))];
  const m = cloneModel(model);
  for (const s of streams) {
    if (m.graph.outputs.some((o) => o.name === s)) continue;
    if (m.graph.inputs.some((o) => o.name === s)) continue;
    m.graph.outputs.push({ name: s, type: { elemType: types.get(s)?.elemType ?? DataType.FLOAT } });
  }
  const sess = await createSession(m, opts.threads ? { threads: opts.threads } : {});
  const sum = new Float64Array(units.length);
  let count = 0;
  try {
    for (const feeds of list) {
      const got = await sess.run(feeds, streams.filter((s) => !(s in feeds)));
      const value = (s: string) => got[s] ?? feeds[s]!;
      units.forEach((u, k) => {
        const a = value(u.input), b = value(u.output);
        const r = cosineDistanceSum(toFloat32(a), toFloat32(b), a.dims, streamAxis(a.dims.length));
        sum[k] += r.sum;
        if (k === 0) count += r.count;
      });
    }
  } finally {
    await sess.release();
  }
  return ranked('influence', unit, units, (_u, k) => sum[k]! / Math.max(1, count), count);
}

/** Sum over the vectors along the last axis of KL(softmax(p) || softmax(q)), and the vector count. */
export function klSum(p: Float32Array, q: Float32Array, dims: readonly number[]): { sum: number; count: number } {
  const len = dims[dims.length - 1] ?? 1;
  const count = p.length / len;
  let sum = 0;
  for (let v = 0; v < count; v++) {
    const o = v * len;
    let mp = -Infinity, mq = -Infinity;
    for (let c = 0; c < len; c++) {
      mp = Math.max(mp, p[o + c]!);
      mq = Math.max(mq, q[o + c]!);
    }
    let zp = 0, zq = 0;
    for (let c = 0; c < len; c++) {
      zp += Math.exp(p[o + c]! - mp);
      zq += Math.exp(q[o + c]! - mq);
    }
    const lzp = Math.log(zp) + mp, lzq = Math.log(zq) + mq;
    let kl = 0;
    for (let c = 0; c < len; c++) {
      const lp = p[o + c]! - lzp, lq = q[o + c]! - lzq;
      kl += Math.exp(lp) * (lp - lq);
    }
    sum += kl;
  }
  return { sum, count };
}

/** The loss increase of removing each depth unit alone, against the dense model's predictions (module comment). */
export async function blockLossIncrease(model: Model, batches: FeedBatches, opts: RankOptions = {}): Promise<DepthRanking> {
  const unit = opts.unit ?? 'block';
  const list = await collect(batches);
  const shapes = shapesFor(model, opts.inputShapes, list[0]!);
  const units = depthUnits(model, shapes, unit);
  const out = model.graph.outputs[0]?.name;
  if (!out) throw new ShearsError('the model has no output');
  const cfg = opts.threads ? { threads: opts.threads } : {};
  const outputsOf = async (m: Model) => {
    const sess = await createSession(m, cfg);
    try {
      const res: Tensor[] = [];
      for (const feeds of list) res.push((await sess.run(feeds, [out]))[out]!);
      return res;
    } finally {
      await sess.release();
    }
  };
  const dense = await outputsOf(model);
  let count = 0;
  const scores: number[] = [];
  for (const u of units) {
    const m = cloneModel(model);
    removeBlocks(m, u.joins, shapes);
    const got = await outputsOf(m);
    let sum = 0;
    count = 0;
    got.forEach((t, b) => {
      const r = klSum(toFloat32(dense[b]!), toFloat32(t), t.dims);
      sum += r.sum;
      count += r.count;
    });
    scores.push(sum / Math.max(1, count));
  }
  return ranked('loss', unit, units, (_u, k) => scores[k]!, count);
}
