/**
 * Planning: which units (coupled channels) to remove.
 * - ratio: remove a fraction of each group's channels (uniform), or of all channels ranked globally (--global);
 * - targetMacs / targetParams: remove channels step by step until the model keeps that fraction (within the
 *   tolerance, 2% by default): uniform mode keeps the groups' kept fractions level, global mode removes the
 *   least important step first;
 * - roundTo: kept channel counts are multiples of N (kernels like aligned widths; a group narrower than N
 *   stays as it is); maxLayerRatio caps the fraction removed from any group.
 * The result is a plan (plain JSON) that names units by a stable key, so it replays on the same model.
 */
import { ShearsError } from '../errors.js';
import type { DepGraph, Group } from '../depgraph/depgraph.js';
import type { CostModel } from './cost.js';

export interface PlanOptions {
  ratio?: number;
  targetMacs?: number;
  targetParams?: number;
  global?: boolean;
  roundTo?: number;
  maxLayerRatio?: number;
  /** Relative tolerance for targets (default 0.02). */
  tolerance?: number;
  /**
   * MAC/param targets in uniform mode, and the budgeted planner (budget.ts: latency targets, allocation
   * 'budget', which then levels the groups the same way): groups whose units span several channels of a parameter axis (attention
   * heads, head_dim positions, KV groups: see GroupState.multi) lose their fraction at this rate relative to the
   * other groups (MLP neurons, conv channels): 0.3 cuts 0.3x the fraction. Default 1: level fractions. The pipeline
   * sets it for transformers (pipeline/steps.ts TRANSFORMER_HEAD_RATE: measured on vit_fmnist).
   */
  headRate?: number;
  /**
   * MAC/param targets in uniform mode: compare groups by the fraction they keep after their next step instead of
   * before it. With coarse steps (roundTo 8 on a 16-wide group is half of it) the narrow groups then lose their
   * step only when the others have come down to that level, instead of first. Default false.
   */
  levelAfterStep?: boolean;
  /**
   * MAC/param targets: how widths are chosen. 'level' (the rule above: level kept fractions, or --global's
   * ranking); 'budget': the budgeted allocation of budget.ts (least importance lost per MAC/param saved,
   * widths multiples of roundTo; with a headRate it levels the groups as 'level' does, price breaking ties).
   * Latency targets always use 'budget'.
   */
  allocation?: 'level' | 'budget';
}

export type BudgetKind = 'macs' | 'params' | 'latency';

/** Why a group got its width. */
export interface GroupAllocation {
  id: number;
  /** The group's first nodes (all of them are in the plan's groups). */
  nodes: string[];
  channels: number;
  kept: number;
  /** Sum of the removed units' importance, and its share of the group's. */
  importanceLost: number;
  importanceLostShare: number;
  /** Budget saved by this group's steps, at the widths they were taken (ms, MACs or params). */
  saved: number;
  /** Importance lost per unit saved by the last step taken (the price this group was cut at). */
  lastRatio: number | null;
  /** Attention units (heads): the head rate limits what this group loses. */
  attention?: boolean;
  /**
   * The next step down that was not taken, and its price (null: none allowed, it saves nothing, or, levelled
   * under a latency budget, it was not timed: only the steps at the level taken are);
   * heldByHeadRate: the head rate did not allow it at the widths reached.
   */
  next: { kept: number; importanceLost: number; saves: number; ratio: number; heldByHeadRate?: boolean } | null;
}

export interface LandingAttempt {
  /** The target the planner was given (the asked one, then corrected by the landings before). */
  planned: number;
  /** Predicted and measured fractions of the dense latency. */
  predicted: number;
  measured: number;
}

export interface Landing {
  attempts: LandingAttempt[];
  kept: number;
  measured: number;
}

export interface Allocation {
  kind: BudgetKind;
  /** 'ms' (predicted onnxruntime latency), 'MACs' or 'params'. */
  unit: string;
  base: number;
  target: number;
  reached: number;
  steps: number;
  /** The head rate the plan kept to (groups levelled, attention groups losing this times the others' fraction). */
  headRate?: number;
  /** Latency budgets: timing graphs measured for this plan, entries in the table, the calibration used. */
  measured?: number;
  tableEntries?: number;
  calibration?: { nchwc: number; other: number; offset: number };
  /**
   * Latency targets: the landing check (prune/structured/latency.ts): each plan made, with the planner's target,
   * its predicted and measured fraction of the dense latency; `kept` indexes the plan this one is.
   */
  landing?: Landing;
  groups: GroupAllocation[];
}

export interface PlanGroup {
  id: number;
  nodes: string[];
  channels: number;
  kept: number;
}

export interface StructuredPlan {
  format: 'shears.structured-plan';
  version: 1;
  /** Residual-join nodes whose branch was removed (depth pruning), applied before channel pruning. */
  removedBlocks: string[];
  /** Removed units, by key (`initializer@axis:index` of a parameter element). */
  removed: string[];
  groups: PlanGroup[];
  /** Kept size of every shrunk parameter axis, by `initializer@axis` (for reading; replay uses `removed`). */
  tensors: Record<string, { before: number; after: number }>;
  options: Record<string, unknown>;
  estimate: { baseMacs: number; macs: number; baseParams: number; params: number };
  /** Why each group got its width, when the budgeted planner chose them (budget.ts). */
  allocation?: Allocation;
}

export interface GroupState {
  g: Group;
  /** Space ids this planning group's units occupy. */
  spaces: number[];
  width: number;
  minKeep: number;
  /** Units by ascending importance. */
  order: number[];
  kept: number;
  /**
   * Kept unit counts are multiples of this: roundTo in channels, divided by the channels a unit holds on each
   * of its axes (an attention head is head_dim channels, so heads round by 1 under roundTo 8 with head_dim 32).
   */
  step: number;
  /** Channels one unit holds on each parameter axis it occupies (their gcd). */
  channels: number;
  /**
   * Whether a unit holds several channels of some parameter axis: an attention head (head_dim columns of the
   * projections, even where a relative-position bias table holds one column per head, as in Swin).
   */
  multi: boolean;
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/**
 * Planning groups: a dependency group's units split by the set of spaces they occupy, so that each producer
 * (e.g. each layer feeding a Concat) gets its own aligned channel count.
 */
export function groupStates(dg: DepGraph, score: Float64Array, maxLayerRatio: number, roundTo: number, headRate: boolean): GroupState[] {
  const out: GroupState[] = [];
  for (const g of dg.groups) {
    if (g.units.length === 0) continue;
    const parts = new Map<string, number[]>();
    for (const u of g.units) {
      const sig = [...new Set(u.elements.map((e) => dg.elementSpace[e]!))].sort((a, b) => a - b).join(',');
      let l = parts.get(sig);
      if (!l) parts.set(sig, (l = []));
      l.push(u.id);
    }
    for (const [sig, ids] of parts) {
      const frozen = parts.size === 1 ? g.frozenUnits : 0;
      const width = ids.length + frozen;
      const order = ids.sort((a, b) => score[a]! - score[b]! || a - b);
      const minKeep = Math.max(frozen, Math.ceil(width * (1 - maxLayerRatio) - 1e-9), 1);
      const perSpace = new Map<number, number>();
      for (const e of dg.units[ids[0]!]!.elements) {
        const sp = dg.elementSpace[e]!;
        if (dg.spaces[sp]!.param) perSpace.set(sp, (perSpace.get(sp) ?? 0) + 1);
      }
      const channels = [...perSpace.values()].reduce((a, b) => gcd(a, b), 0) || 1;
      const multi = [...perSpace.values()].some((c) => c > 1);
      // With a head rate (transformers), heads round by the channels they hold on their multi-channel axes: a
      // Swin head's one column of the relative-position bias table does not make heads round by roundTo.
      const aligned = headRate && multi ? [...perSpace.values()].filter((c) => c > 1).reduce((a, b) => gcd(a, b), 0) : channels;
      const step = roundTo / gcd(roundTo, aligned);
      out.push({ g, spaces: sig.split(',').map(Number), width, minKeep, order, kept: width, step, channels, multi });
    }
  }
  return out;
}

/** The next kept count below `k` that is a multiple of the group's step (undefined when none is allowed). */
export function nextKept(st: GroupState, k: number, r = st.step): number | undefined {
  if (st.width < r && r > 1) return undefined;
  const n = Math.floor((k - 1) / r) * r;
  return n >= st.minKeep && n >= 1 ? n : undefined;
}

function roundKept(st: GroupState, want: number): number {
  const r = st.step;
  if (st.width < r && r > 1) return st.width;
  let k = Math.round(want / r) * r;
  if (k >= st.width) return st.width;
  const lo = Math.ceil(st.minKeep / r) * r;
  if (k < lo) k = lo;
  return Math.min(k, st.width);
}

/** Applies "group keeps k" to a size vector (removes the least important units beyond k). */
export function removedUnits(st: GroupState, k: number): number[] {
  return st.order.slice(0, st.width - k);
}

export function planStructured(dg: DepGraph, cost: CostModel, score: Float64Array, opts: PlanOptions): { removed: Set<number>; plan: StructuredPlan } {
  const r = Math.max(1, Math.floor(opts.roundTo ?? 1));
  const maxLayerRatio = opts.maxLayerRatio ?? 0.9;
  if (!(maxLayerRatio > 0 && maxLayerRatio <= 1)) throw new ShearsError('maxLayerRatio must be in (0, 1]');
  const states = groupStates(dg, score, maxLayerRatio, r, (opts.headRate ?? 1) !== 1);
  const size = cost.initialSizes();
  const apply = (st: GroupState, k: number) => {
    const from = st.width - st.kept, to = st.width - k;
    const sign = to > from ? -1 : 1;
    const [a, b] = to > from ? [from, to] : [to, from];
    for (let i = a; i < b; i++) {
      for (const e of dg.units[st.order[i]!]!.elements) size[dg.elementSpace[e]!]! += sign;
    }
    st.kept = k;
  };

  if (opts.ratio !== undefined) {
    const R = opts.ratio;
    if (!(R >= 0 && R < 1)) throw new ShearsError('ratio must be in [0, 1)');
    if (opts.global) {
      const all = states.flatMap((st) => st.order.map((u) => ({ u, st })));
      all.sort((x, y) => score[x.u]! - score[y.u]!);
      const total = states.reduce((s, st) => s + st.width, 0);
      const n = Math.floor(total * R);
      const count = new Map<GroupState, number>();
      for (const { st } of all.slice(0, n)) count.set(st, (count.get(st) ?? 0) + 1);
      for (const st of states) apply(st, roundKept(st, st.width - (count.get(st) ?? 0)));
    } else for (const st of states) apply(st, roundKept(st, st.width * (1 - R)));
  } else {
    const useMacs = opts.targetMacs !== undefined;
    const F = useMacs ? opts.targetMacs! : opts.targetParams;
    if (F === undefined) throw new ShearsError('give one of ratio, targetMacs, targetParams');
    if (!(F > 0 && F <= 1)) throw new ShearsError('a target must be in (0, 1]');
    const tol = opts.tolerance ?? 0.02;
    const base = useMacs ? cost.baseMacs : cost.baseParams;
    const T = F * base;
    let cur = base;
    const groupOfSpace = new Map<number, GroupState[]>();
    for (const st of states) for (const s of st.spaces) (groupOfSpace.get(s) ?? groupOfSpace.set(s, []).get(s)!).push(st);
    // Neighbour groups: those sharing a costed node or parameter tensor (their deltas change together).
    const neighbours = new Map<GroupState, Set<GroupState>>();
    for (const st of states) {
      const set = new Set<GroupState>([st]);
      for (const s of st.spaces) {
        if (useMacs) {
          for (const ni of cost.nodesOfSpace[s]!) for (const a of cost.nodes[ni]!.axes) {
            for (const o of groupOfSpace.get(a.space) ?? []) set.add(o);
          }
        } else {
          for (const pi of cost.paramsOfSpace[s]!) for (const x of cost.paramNeighbours[pi]!) for (const o of groupOfSpace.get(x) ?? []) set.add(o);
        }
      }
      neighbours.set(st, set);
    }
    const spacesOf = (st: GroupState) => st.spaces;
    const deltaOf = (st: GroupState, k: number): number => {
      const before = Int32Array.from(size);
      const old = st.kept;
      apply(st, k);
      const d = cost.delta(spacesOf(st), before, size);
      apply(st, old);
      return useMacs ? d.macs : d.params;
    };
    interface Cand { st: GroupState; k: number; delta: number; imp: number }
    const cache = new Map<GroupState, Cand | null>();
    const candOf = (st: GroupState, roundChannels?: number): Cand | null => {
      const k = nextKept(st, st.kept, roundChannels === undefined ? st.step : roundChannels / gcd(roundChannels, st.channels));
      if (k === undefined) return null;
      const delta = deltaOf(st, k);
      let imp = 0;
      for (let i = st.width - st.kept; i < st.width - k; i++) imp += score[st.order[i]!]!;
      imp /= st.kept - k;
      return { st, k, delta, imp };
    };
    const rate = opts.headRate ?? 1;
    if (!(rate > 0 && rate <= 1)) throw new ShearsError('headRate must be in (0, 1]');
    // With a head rate, groups compare by their fraction after the step (a head is a coarse step: a quarter of
    // a 4-head group), multi-channel units' removed fraction divided by the rate.
    const level = (c: Cand) => 1 - (1 - c.k / c.st.width) / (c.st.multi ? rate : 1);
    const better = (a: Cand, b: Cand) => {
      if (opts.global) return a.imp < b.imp;
      if (rate !== 1 || opts.levelAfterStep) {
        const la = level(a), lb = level(b);
        return la > lb + 1e-9 || (Math.abs(la - lb) <= 1e-9 && a.imp < b.imp);
      }
      const fa = a.st.kept / a.st.width, fb = b.st.kept / b.st.width;
      return fa > fb + 1e-9 || (Math.abs(fa - fb) <= 1e-9 && a.imp < b.imp);
    };
    const lo = T * (1 - tol);
    // Cached step deltas of neighbours go stale when a step is taken; a stale candidate is recomputed when
    // it would be chosen (deltas only decide the window check, the choice is by importance or balance).
    const stale = new Set<GroupState>();
    const fresh = (st: GroupState): Cand | null => {
      if (!cache.has(st) || stale.has(st)) {
        cache.set(st, candOf(st));
        stale.delete(st);
      }
      return cache.get(st)!;
    };
    for (let guard = 0; cur > T * (1 + tol / 4) && guard < 1000000; guard++) {
      let best: Cand | null = null;
      let bestOver: Cand | null = null;
      for (const st of states) {
        const c = cache.has(st) ? cache.get(st)! : fresh(st);
        if (!c || c.delta >= 0) continue;
        if (cur + c.delta >= lo) {
          if (!best || better(c, best)) best = c;
        } else if (!bestOver || c.delta > bestOver.delta) bestOver = c;
      }
      if (best && stale.has(best.st)) {
        fresh(best.st);
        continue;
      }
      let done = false;
      if (!best) {
        if (stale.size) {
          for (const st of [...stale]) fresh(st);
          continue;
        }
        // Every aligned step overshoots the window: try finer steps, then accept the closest.
        let fine: Cand | null = null;
        for (let rr = r >> 1; rr >= 1 && !fine; rr >>= 1) {
          for (const st of states) {
            const c = candOf(st, rr);
            if (c && c.delta < 0 && cur + c.delta >= lo && (!fine || better(c, fine))) fine = c;
          }
        }
        best = fine ?? bestOver;
        done = fine === null;
        if (!best) break;
      }
      apply(best.st, best.k);
      cur += best.delta;
      cache.delete(best.st);
      for (const n of neighbours.get(best.st)!) if (n !== best.st) stale.add(n);
      if (done) break;
    }
  }

  return buildPlan(dg, cost, states, size, opts);
}

/** The plan of planning states at their kept counts (`size`: the space sizes they give). */
export function buildPlan(dg: DepGraph, cost: CostModel, states: GroupState[], size: Int32Array, opts: PlanOptions): { removed: Set<number>; plan: StructuredPlan } {
  const removed = new Set<number>();
  for (const st of states) for (const u of removedUnits(st, st.kept)) removed.add(u);
  const plan: StructuredPlan = {
    format: 'shears.structured-plan',
    version: 1,
    removedBlocks: [],
    removed: [...removed].map((u) => dg.units[u]!.key).sort(),
    groups: states.filter((st) => st.kept < st.width).map((st) => ({ id: st.g.id, nodes: st.g.nodes, channels: st.width, kept: st.kept })),
    tensors: Object.fromEntries(dg.spaces.filter((sp) => sp.param && size[sp.id]! < sp.size).map((sp) => [`${sp.value}@${sp.axis}`, { before: sp.size, after: size[sp.id]! }])),
    options: Object.fromEntries((['ratio', 'targetMacs', 'targetParams', 'global', 'roundTo', 'maxLayerRatio', 'tolerance', 'headRate', 'levelAfterStep', 'allocation'] as const)
      .filter((k) => opts[k] !== undefined).map((k) => [k, opts[k]])),
    estimate: { baseMacs: cost.baseMacs, macs: cost.macs(size), baseParams: cost.baseParams, params: cost.paramCount(size) },
  };
  return { removed, plan };
}

/** The units a saved plan removes, on the same model's dependency graph. */
export function unitsOfPlan(dg: DepGraph, plan: StructuredPlan): Set<number> {
  if (plan.format !== 'shears.structured-plan' || plan.version !== 1) throw new ShearsError('not a shears structured plan (format/version)');
  const byKey = new Map<string, number>();
  for (const u of dg.units) byKey.set(u.key, u.id);
  const out = new Set<number>();
  for (const k of plan.removed) {
    const u = byKey.get(k);
    if (u === undefined) throw new ShearsError(`the plan removes '${k}', which is not a prunable channel of this model`);
    out.add(u);
  }
  return out;
}
