/**
 * Budgeted width allocation: every planning group (plan.ts groupStates) starts at full width; the planner
 * repeatedly takes the step (a group down to one of its next few allowed widths: multiples of roundTo) that
 * loses the least importance per unit of budget saved, the cost of a step evaluated at the current widths of
 * every layer it touches (groups couple through convolutions' input and output channels), until the budget is
 * met. The budget is MACs or parameters (the cost model) or latency (the measured segment table of
 * latency-model.ts: widths that save no time are never worth a step, and a step over such a width to one that
 * does is taken in one go). The step that crosses the budget is the crossing step that loses the least
 * importance, so the plan stops at the budget, not far below it.
 *
 * Head rate (transformers, plan.ts headRate): the groups are levelled as the level planner levels them, an
 * attention group (GroupState.multi: heads) losing `headRate` times the fraction the others (MLP neurons) lose:
 * the step taken is the one after which its group keeps the most, price breaking ties and choosing the step that
 * crosses the budget; steps that save nothing (by the latency table) are never taken. Measured on vit_fmnist at
 * batch 64 (README): the price-driven plan took 3 of 4 heads in every block and lost 4-6 points of top-1 against
 * the level plan at the same measured latency; a cap of the heads at the rate with price choosing within heads
 * and within MLPs still lost 0.4-0.7 points (it cut three MLPs to 32 and kept 176 in the last block); levelled,
 * the plans are the level plans at the latency asked. A head step held back by the rule is said in the plan
 * (`next.heldByHeadRate`).
 *
 * Latency lookups are measured lazily: the steps under consideration are gathered, and their missing timing
 * graphs measured together, between choices (the generator yields them; planBudget awaits the table).
 */
import { ShearsError } from '../errors.js';
import type { DepGraph } from '../depgraph/depgraph.js';
import type { CostModel } from './cost.js';
import { buildPlan, groupStates, nextKept, type GroupAllocation, type GroupState, type PlanOptions, type StructuredPlan } from './plan.js';

export type { Allocation, GroupAllocation } from './plan.js';
import type { SegmentLatency } from './latency-model.js';
import type { MeasureOptions, TimingGraph } from './latency-table.js';

import type { BudgetKind } from './plan.js';

export type { BudgetKind } from './plan.js';

export interface BudgetOptions {
  kind: BudgetKind;
  /** Fraction of the dense model's figure to keep, in (0, 1]. */
  target: number;
  /** The latency model (with the dependency graph `dg`), for kind 'latency'; calibrated. */
  latency?: SegmentLatency;
  roundTo?: number;
  maxLayerRatio?: number;
  /** How many next widths of a group one step may go to (default 2 for latency, 1 otherwise). */
  lookahead?: number;
  /** Options recorded in the plan. */
  planOptions?: PlanOptions;
  measure?: MeasureOptions;
  /** Return the closest plan when the budget cannot be reached (default: a ShearsError naming the closest figure). */
  allowShort?: boolean;
  /** Groups levelled, attention groups losing this times the fraction the others lose (plan.ts headRate; default 1: by price alone). */
  headRate?: number;
  /**
   * Groups levelled as the level planner levels them (kept fractions equal, heads at `headRate`), the budget in
   * the table's unit: price only breaks ties and chooses the crossing step (prune --allocation level with a
   * latency target).
   */
  level?: boolean;
  progress?: (message: string) => void;
}

/**
 * A step of group `st` to width `k`: its saving (`delta`, NaN until timed) and importance lost; `est`, once
 * ranked untimed, its estimated saving (valid as long as the candidate: a neighbour's step makes it anew).
 */
interface Cand { st: GroupState; k: number; delta: number; imp: number; est?: number }

type Need = TimingGraph[];

const nodesHead = (nodes: string[]) => (nodes.length > 4 ? [...nodes.slice(0, 4), `... (${nodes.length})`] : nodes);

function* allocate(dg: DepGraph, cost: CostModel, score: Float64Array, o: BudgetOptions): Generator<Need, { removed: Set<number>; plan: StructuredPlan }, void> {
  const F = o.target;
  if (!(F > 0 && F <= 1)) throw new ShearsError('a target must be in (0, 1]');
  const r = Math.max(1, Math.floor(o.roundTo ?? 1));
  const maxLayerRatio = o.maxLayerRatio ?? 0.9;
  const rate = o.headRate ?? 1;
  if (!(rate > 0 && rate <= 1)) throw new ShearsError('headRate must be in (0, 1]');
  const states = groupStates(dg, score, maxLayerRatio, r, rate !== 1);
  // The head-rate rule applies only where there are both attention groups and others.
  const others = states.filter((st) => !st.multi);
  const limited = o.level === true || (rate !== 1 && others.length > 0 && states.some((st) => st.multi));
  // With a head rate the groups are levelled as the level planner levels them (plan.ts): the step taken is the
  // one whose group keeps the most after it, an attention group's lost fraction counted over the rate; price
  // (importance lost per unit saved) breaks ties and chooses the step that crosses the budget.
  const levelAfter = (c: Cand) => 1 - (c.st.width - c.k) / c.st.width / (c.st.multi ? rate : 1);
  const size = cost.initialSizes();
  const sl = o.latency;
  if (o.kind === 'latency' && !sl) throw new ShearsError('a latency budget needs a latency model');
  let look = Math.max(1, o.lookahead ?? (o.kind === 'latency' ? 2 : 1));

  const setKept = (st: GroupState, k: number, sz: Int32Array) => {
    const from = st.width - st.kept, to = st.width - k;
    const sign = to > from ? -1 : 1;
    const [a, b] = to > from ? [from, to] : [to, from];
    for (let i = a; i < b; i++) for (const e of dg.units[st.order[i]!]!.elements) sz[dg.elementSpace[e]!]! += sign;
  };
  const segsOf = new Map<GroupState, number[]>();
  const segs = (st: GroupState) => {
    let l = segsOf.get(st);
    if (!l) {
      const set = new Set<number>();
      for (const s of st.spaces) for (const k of sl!.segmentsOfSpace(s)) set.add(k);
      segsOf.set(st, (l = [...set]));
    }
    return l;
  };
  const after = (st: GroupState, k: number) => {
    const sz = Int32Array.from(size);
    setKept(st, k, sz);
    return sz;
  };
  const total = (sz: Int32Array) => (o.kind === 'latency' ? sl!.predict(sz) : o.kind === 'macs' ? cost.macs(sz) : cost.paramCount(sz));
  const base = total(size);
  const T = F * base;
  let cur = base;

  // Latency budgets: a wide group steps by a multiple of its step, so that it has at most about 16 widths to
  // measure (512 channels by 32, 256 by 16, 128 and less by 8 under roundTo 8).
  const stride = (st: GroupState) => (o.kind === 'latency' ? st.step * Math.max(1, Math.floor(st.width / (16 * st.step))) : st.step);
  const widths = (st: GroupState): number[] => {
    const out: number[] = [];
    let k: number | undefined = st.kept;
    while (out.length < look && (k = nextKept(st, k, stride(st))) !== undefined) out.push(k);
    return out;
  };
  const delta = (st: GroupState, k: number): number => {
    const sz = after(st, k);
    if (o.kind === 'latency') {
      const ks = segs(st);
      return sl!.predict(sz, ks) - sl!.predict(size, ks);
    }
    const d = cost.delta(st.spaces, size, sz);
    return o.kind === 'macs' ? d.macs : d.params;
  };
  // A unit's importance counts once per parameter element it holds (a residual channel spans many layers):
  // scores aggregated by mean become sums over the layers the unit's removal touches.
  const mass = new Float64Array(dg.units.length);
  for (const u of dg.units) {
    let m = 0;
    for (const e of u.elements) if (dg.spaces[dg.elementSpace[e]!]!.param) m++;
    mass[u.id] = Math.max(1, m);
  }
  const impOf = (st: GroupState, k: number) => {
    let s = 0;
    for (let i = st.width - st.kept; i < st.width - k; i++) s += score[st.order[i]!]! * mass[st.order[i]!]!;
    return s;
  };
  const cands = new Map<GroupState, Cand[]>();
  const stale = new Set<GroupState>(states);
  const neighbours = new Map<GroupState, GroupState[]>();
  {
    const bySpace = new Map<number, GroupState[]>();
    for (const st of states) for (const s of st.spaces) (bySpace.get(s) ?? bySpace.set(s, []).get(s)!).push(st);
    for (const st of states) {
      const set = new Set<GroupState>();
      if (o.kind === 'latency') {
        const mine = new Set(segs(st));
        for (const other of states) if (other !== st && segs(other).some((k) => mine.has(k))) set.add(other);
      } else {
        for (const s of st.spaces) {
          const list = o.kind === 'macs' ? cost.nodesOfSpace[s]!.flatMap((ni) => cost.nodes[ni]!.axes.map((a) => a.space)) : cost.paramsOfSpace[s]!.flatMap((pi) => cost.paramNeighbours[pi]!);
          for (const x of list) for (const g of bySpace.get(x) ?? []) if (g !== st) set.add(g);
        }
      }
      neighbours.set(st, [...set]);
    }
  }
  const taken = new Map<GroupState, { saved: number; lastRatio: number | null }>();
  let steps = 0;
  // Levelled under a latency budget, which step is taken is decided by level first (no latency needed): only the
  // steps at the level being taken are timed, lazily (resnet18 at batch 32: a fraction of the graphs).
  const lazy = limited && o.kind === 'latency';
  // The timing graphs the table lacks to price group `st`'s step to width `k` (its segments before and after).
  const missingFor = (st: GroupState, k: number) => [...sl!.missing(after(st, k), segs(st)), ...sl!.missing(size, segs(st))];
  const unique = (graphs: Iterable<Need[number]>): Need => [...new Map([...graphs].map((g) => [g.key, g] as const)).values()];
  const refresh = function* (): Generator<Need, void, void> {
    if (!stale.size) return;
    if (lazy) {
      // untimed (NaN) whatever the table holds: ranked by estimate, timed when first (cheapest)
      for (const st of stale) cands.set(st, widths(st).map((k) => ({ st, k, delta: NaN, imp: impOf(st, k) })));
      stale.clear();
      return;
    }
    if (o.kind === 'latency') {
      const need = unique([...stale].flatMap((st) => [...widths(st).flatMap((k) => missingFor(st, k)), ...sl!.missing(size, segs(st))]));
      if (need.length) yield need;
    }
    for (const st of stale) cands.set(st, widths(st).map((k) => ({ st, k, delta: delta(st, k), imp: impOf(st, k) })));
    stale.clear();
  };

  const ratio = (c: Cand) => c.imp / Math.max(-c.delta, 1e-12);
  // Of the steps `at` (one level), the one that saves time at the least importance per ms, timed lazily: a step
  // not yet timed is ranked by its estimate (the dense segments' times scaled by MACs, latency-model.ts
  // estimate: never the table's other entries, so that a warm table takes the cold plan's path and measures
  // nothing), timed when it ranks first, and ranked again by its measured saving; a step is taken only on
  // measured figures. MAC scaling overstates what a narrower width saves, so a step ranked below a measured one
  // would rarely have beaten it: the level's other steps are not timed (at each new level the eager way timed
  // every group's next step, and again each time a neighbour moved).
  const estimate = (st: GroupState, k: number) => {
    const ks = segs(st);
    return sl!.estimate(after(st, k), ks) - sl!.estimate(size, ks);
  };
  const cheapest = function* (at: Cand[]): Generator<Need, Cand | undefined, void> {
    for (;;) {
      let pick: Cand | undefined, pr = Infinity;
      for (const c of at) {
        const d = Number.isNaN(c.delta) ? (c.est ??= estimate(c.st, c.k)) : c.delta;
        // an untimed step the estimate says saves nothing still ranks, last (the table may say otherwise)
        if (!(d < 0) && !Number.isNaN(c.delta)) continue;
        const r = d < 0 ? c.imp / Math.max(-d, 1e-12) : Infinity;
        if (!pick || r < pr) { pick = c; pr = r; }
      }
      if (!pick || !Number.isNaN(pick.delta)) return pick;
      const need = unique(missingFor(pick.st, pick.k));
      if (need.length) yield need;
      pick.delta = delta(pick.st, pick.k);
    }
  };
  while (cur > T * (1 + 1e-9)) {
    yield* refresh();
    const better = (c: Cand, b: Cand) => {
      if (limited) {
        const lc = levelAfter(c), lb = levelAfter(b);
        if (Math.abs(lc - lb) > 1e-9) return lc > lb;
      }
      return ratio(c) < ratio(b);
    };
    let best: Cand | undefined;
    if (lazy) {
      // levels from the highest down: the first level where a step saves time is the level taken
      const all = [...cands.values()].flat();
      const levels = [...new Set(all.map(levelAfter))].sort((a, b) => b - a);
      for (const lv of levels) {
        best = yield* cheapest(all.filter((c) => Math.abs(levelAfter(c) - lv) <= 1e-9));
        if (best) break;
      }
    } else for (const list of cands.values()) for (const c of list) if (c.delta < 0 && (!best || better(c, best))) best = c;
    if (!best && o.kind === 'latency' && look < 6) {
      // No next width saves time by the table (with AVX-512's blocks of 16, a step of 8 from a multiple of 16
      // lands on a padded width): look two widths further in every group before calling the target unreachable.
      look += 2;
      for (const st of states) stale.add(st);
      continue;
    }
    if (!best) break;
    if (cur + best.delta <= T) {
      // the last step: of those that reach the budget, the one that loses the least importance
      // (with a head rate, of those at the same level: the last step does not unlevel the groups)
      const lb = levelAfter(best);
      if (lazy) {
        // the untimed steps at its level that lose less importance could be it: timed now
        const open = [...cands.values()].flat().filter((c) => Number.isNaN(c.delta) && c.imp < best!.imp && Math.abs(levelAfter(c) - lb) <= 1e-9);
        const need = unique(open.flatMap((c) => missingFor(c.st, c.k)));
        if (need.length) yield need;
        for (const c of open) c.delta = delta(c.st, c.k);
      }
      for (const list of cands.values()) for (const c of list) if (c.delta < 0 && (!limited || Math.abs(levelAfter(c) - lb) <= 1e-9) && cur + c.delta <= T && c.imp < best.imp) best = c;
    }
    const st = best.st;
    setKept(st, best.k, size);
    st.kept = best.k;
    cur += best.delta;
    steps++;
    const t = taken.get(st) ?? { saved: 0, lastRatio: null };
    taken.set(st, { saved: t.saved - best.delta, lastRatio: ratio(best) });
    stale.add(st);
    for (const n of neighbours.get(st)!) stale.add(n);
    if (steps % 50 === 0) o.progress?.(`planner: ${steps} steps, ${(cur / base * 100).toFixed(1)}% of the dense ${o.kind}`);
  }
  // the exact figure at the chosen widths (deltas were summed step by step)
  cur = total(size);
  const fmt = (x: number) => (o.kind === 'latency' ? `${x.toFixed(2)} ms` : `${(x / 1e6).toFixed(2)}M ${o.kind === 'macs' ? 'MACs' : 'params'}`);
  if (cur > T * (1 + 1e-6) && !o.allowShort) {
    throw new ShearsError(`the target ${(F * 100).toFixed(1)}% of the ${o.kind === 'latency' ? 'predicted latency' : o.kind === 'macs' ? 'MACs' : 'parameters'} cannot be reached by channel widths (multiples of ${r}, at most ${Math.round(maxLayerRatio * 100)}% of a group removed): the closest reachable is ${(cur / base * 100).toFixed(1)}% (${fmt(cur)} of ${fmt(base)})`);
  }
  yield* refresh();
  const opts: PlanOptions = { ...(o.planOptions ?? {}), allocation: 'budget' };
  const res = buildPlan(dg, cost, states, size, opts);
  // A head step not taken because an other group's next step keeps more (at the rate): said in the plan.
  let otherLevel = -Infinity;
  if (limited) for (const list of cands.values()) for (const c of list) if (c.delta < 0 && !c.st.multi) otherLevel = Math.max(otherLevel, levelAfter(c));
  const held = (c: Cand) => limited && c.st.multi && levelAfter(c) < otherLevel - 1e-9;
  const groups: GroupAllocation[] = states.map((st) => {
    const tot = impOf({ ...st, kept: st.width }, Math.max(0, st.width - st.order.length));
    const lost = impOf({ ...st, kept: st.width }, st.kept);
    const t = taken.get(st);
    const nx = (cands.get(st) ?? []).find((c) => c.delta < 0);
    return {
      id: st.g.id,
      nodes: nodesHead(st.g.nodes),
      ...(limited && st.multi ? { attention: true } : {}),
      channels: st.width,
      kept: st.kept,
      importanceLost: lost,
      importanceLostShare: tot > 0 ? lost / tot : 0,
      saved: t?.saved ?? 0,
      lastRatio: t?.lastRatio ?? null,
      next: nx ? { kept: nx.k, importanceLost: nx.imp, saves: -nx.delta, ratio: ratio(nx), ...(held(nx) ? { heldByHeadRate: true } : {}) } : null,
    };
  });
  res.plan.allocation = {
    kind: o.kind,
    unit: o.kind === 'latency' ? 'ms' : o.kind === 'macs' ? 'MACs' : 'params',
    base,
    target: T,
    reached: cur,
    steps,
    ...(limited ? { headRate: rate } : {}),
    ...(o.level ? { level: true } : {}),
    ...(sl ? { measured: sl.table.measured, tableEntries: sl.table.entries.size, calibration: { nchwc: sl.calibration.nchwc, other: sl.calibration.other, offset: sl.calibration.offset } } : {}),
    groups,
  };
  return res;
}

/** The budgeted plan, measuring latency lookups as needed (kind 'latency'). */
export async function planBudget(dg: DepGraph, cost: CostModel, score: Float64Array, o: BudgetOptions): Promise<{ removed: Set<number>; plan: StructuredPlan }> {
  const gen = allocate(dg, cost, score, o);
  for (;;) {
    const n = gen.next();
    if (n.done) return n.value;
    await o.latency!.table.measure(n.value, { rewarm: o.latency!.rewarm, ...o.measure, ...(o.progress ? { progress: o.progress } : {}) });
  }
}

/** The budgeted plan of a MAC or parameter budget (no measurements). */
export function planBudgetSync(dg: DepGraph, cost: CostModel, score: Float64Array, o: BudgetOptions): { removed: Set<number>; plan: StructuredPlan } {
  if (o.kind === 'latency') throw new ShearsError('a latency budget is planned with planBudget (it measures)');
  const n = allocate(dg, cost, score, o).next();
  if (!n.done) throw new ShearsError('internal: a MAC/param budget asked for measurements');
  return n.value;
}
