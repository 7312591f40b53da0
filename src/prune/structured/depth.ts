/**
 * Depth pruning: removes whole residual branches. A residual join (OpDef.residualJoin: Add/Sum) whose one
 * summand is the block input `s` and whose other summand is computed only from `s` and constants by nodes
 * used nowhere else is a removable branch: its output becomes `s` and the branch dies. Shape arithmetic on
 * branch values (Shape -> Gather -> Concat feeding the branch's Reshapes), constant once the input shape is, may
 * read them too: it dies with the branch.
 *
 * Depth units group branches: in a transformer, an attention branch (one that multiplies two computed values,
 * e.g. Q K^T) followed directly by a branch that does not (the MLP, whose skip is the attention join's output)
 * form one block; `unit` chooses whole blocks, or only their attention or MLP sub-blocks. In other networks
 * (ResNets) every branch is its own unit.
 */
import { ShearsError } from '../../errors.js';
import { isFloatType } from '../../ir/dtype.js';
import { removeDeadNodes, replaceAllUses } from '../../ir/edit.js';
import type { Model, Node } from '../../ir/graph.js';
import { toFloat32 } from '../../ir/tensor.js';
import { inferShapes } from '../../analysis/shapes.js';
import { opDef, weightSpec } from '../../ops/registry.js';

/** What a residual branch computes: attention mixes computed values, a branch after one is its MLP. */
export type BranchKind = 'attention' | 'mlp' | 'residual';

export interface ResidualBlock {
  /** The join node's name. */
  join: string;
  /** The skip input (kept). */
  skip: string;
  /** The join's output (the residual stream after the branch). */
  output: string;
  /** Nodes of the branch (removed). */
  branch: string[];
  /** RMS of the branch's parameters (smaller: less important). */
  score: number;
  /** Parameter count and sum of squares behind `score`. */
  paramCount: number;
  paramSumSq: number;
  kind: BranchKind;
}

/** Which depth units to remove: whole blocks (a transformer's attention + MLP; any other branch alone), or sub-blocks. */
export type BlockUnit = 'block' | 'attention' | 'mlp';
export const BLOCK_UNITS: readonly BlockUnit[] = ['block', 'attention', 'mlp'];

export interface DepthUnit {
  /** A readable name: the joins' common name prefix ('/blocks.0'), or the join's name. */
  name: string;
  kind: 'block' | BranchKind;
  /** The residual joins removed with the unit, in graph order. */
  joins: string[];
  /** The residual stream before the unit (the first branch's skip) and after it (the last join's output). */
  input: string;
  output: string;
  /** RMS of the unit's parameters. */
  score: number;
}

const MAX_BRANCH = 400;

/** Residual branches of a model that can be dropped (skip path kept), in graph order. */
export function findResidualBlocks(model: Model, inputShapes: Record<string, number[]>): ResidualBlock[] {
  const g = model.graph;
  const shapes = inferShapes(model, { inputShapes });
  const producer = new Map<string, Node>();
  const consumers = new Map<string, Node[]>();
  for (const n of g.nodes) {
    for (const o of n.outputs) if (o) producer.set(o, n);
    for (const i of n.inputs) if (i) (consumers.get(i) ?? consumers.set(i, []).get(i)!).push(n);
  }
  const outputs = new Set(g.outputs.map((o) => o.name));
  const isConst = (v: string) => g.initializers.has(v) || shapes.constants.has(v);
  const constOutputs = (n: Node) => n.outputs.every((o) => !o || isConst(o));
  const sameShape = (a: string, b: string) => {
    const x = shapes.types.get(a)?.shape, y = shapes.types.get(b)?.shape;
    return !!x && !!y && x.length === y.length && x.every((d, i) => d === y[i] && typeof d === 'number');
  };
  const blocks: ResidualBlock[] = [];
  for (const join of g.nodes) {
    if (!opDef(join)?.residualJoin || join.inputs.length !== 2) continue;
    const y = join.outputs[0]!;
    for (let bi = 0; bi < 2; bi++) {
      const b = join.inputs[bi]!, s = join.inputs[1 - bi]!;
      if (!b || !s || isConst(b) || isConst(s) || !sameShape(s, y) || !sameShape(b, y)) continue;
      const branch = new Set<Node>();
      const stack: string[] = [b];
      let ok = true, readsSkip = false;
      while (stack.length && ok) {
        const v = stack.pop()!;
        if (v === s) {
          readsSkip = true;
          continue;
        }
        if (isConst(v)) continue;
        const p = producer.get(v);
        if (!p) {
          ok = false;
          break;
        }
        if (branch.has(p)) continue;
        branch.add(p);
        if (branch.size > MAX_BRANCH) ok = false;
        for (const i of p.inputs) if (i) stack.push(i);
      }
      if (!ok || !readsSkip || branch.size === 0) continue;
      // Nothing outside the branch may read its values, except shape arithmetic (constant outputs) that only
      // the branch reads in turn: it joins the branch.
      const queue = [...branch];
      while (queue.length && ok) {
        const n = queue.pop()!;
        for (const o of n.outputs) {
          if (!o) continue;
          if (outputs.has(o)) ok = false;
          for (const c of consumers.get(o) ?? []) {
            if (c === join || branch.has(c)) continue;
            if (constOutputs(c) && branch.size < MAX_BRANCH) {
              branch.add(c);
              queue.push(c);
            } else ok = false;
          }
        }
      }
      if (!ok) continue;
      let ss = 0, cnt = 0;
      for (const n of branch) {
        for (const i of n.inputs) {
          const t = i ? g.initializers.get(i) : undefined;
          if (!t || !isFloatType(t.dtype) || t.dims.length < 2) continue;
          const w = toFloat32(t);
          for (let k = 0; k < w.length; k++) ss += w[k]! * w[k]!;
          cnt += w.length;
        }
      }
      // A product of two computed values (a layer op whose weight is not constant): attention scores/values.
      const mixes = [...branch].some((n) => {
        const w = weightSpec(n);
        const wv = w ? n.inputs[w.input] : undefined;
        return !!wv && !isConst(wv) && n.inputs.every((i, k) => k === w!.input || !i || !isConst(i));
      });
      blocks.push({
        join: join.name, skip: s, output: y, branch: [...branch].map((n) => n.name),
        score: cnt ? Math.sqrt(ss / cnt) : 0, paramCount: cnt, paramSumSq: ss, kind: mixes ? 'attention' : 'residual',
      });
      break;
    }
  }
  // A non-mixing branch whose skip is an attention join's output is that attention's MLP.
  const attnOut = new Set(blocks.filter((b) => b.kind === 'attention').map((b) => b.output));
  for (const b of blocks) if (b.kind === 'residual' && attnOut.has(b.skip)) b.kind = 'mlp';
  return blocks;
}

function commonName(names: string[]): string {
  if (names.length === 1) return names[0]!;
  let p = names[0]!;
  for (const n of names) while (!n.startsWith(p)) p = p.slice(0, -1);
  const cut = p.lastIndexOf('/');
  const name = cut > 0 ? p.slice(0, cut) : '';
  return name || names.join('+');
}

function unitOf(kind: DepthUnit['kind'], parts: ResidualBlock[]): DepthUnit {
  const cnt = parts.reduce((a, b) => a + b.paramCount, 0), ss = parts.reduce((a, b) => a + b.paramSumSq, 0);
  return {
    name: commonName(parts.map((p) => p.join)),
    kind,
    joins: parts.map((p) => p.join),
    input: parts[0]!.skip,
    output: parts[parts.length - 1]!.output,
    score: cnt ? Math.sqrt(ss / cnt) : 0,
  };
}

/**
 * The depth units of a model for `unit` (see the module comment), in graph order. Throws a ShearsError naming
 * what the model has when it has no unit of that kind (never an empty list).
 */
export function depthUnits(model: Model, inputShapes: Record<string, number[]>, unit: BlockUnit = 'block', ignore?: RegExp): DepthUnit[] {
  const blocks = findResidualBlocks(model, inputShapes);
  const counts = () => {
    const c = { attention: 0, mlp: 0, residual: 0 };
    for (const b of blocks) c[b.kind]++;
    return `${c.attention} attention, ${c.mlp} MLP, ${c.residual} other residual branches`;
  };
  if (blocks.length === 0) throw new ShearsError('the model has no removable residual blocks (no Add/Sum whose one summand is computed only from the other by nodes used nowhere else): depth pruning cannot remove anything');
  let units: DepthUnit[];
  if (unit === 'block') {
    const mlpAfter = new Map<string, ResidualBlock>();
    for (const b of blocks) if (b.kind === 'mlp') mlpAfter.set(b.skip, b);
    const paired = new Set<ResidualBlock>();
    units = [];
    for (const b of blocks) {
      if (paired.has(b)) continue;
      const m = b.kind === 'attention' ? mlpAfter.get(b.output) : undefined;
      if (m) {
        paired.add(m);
        units.push(unitOf('block', [b, m]));
      } else units.push(unitOf(b.kind, [b]));
    }
  } else {
    units = blocks.filter((b) => b.kind === unit).map((b) => unitOf(b.kind, [b]));
    if (units.length === 0) throw new ShearsError(`the model has no ${unit === 'mlp' ? 'MLP' : 'attention'} sub-blocks to remove (${counts()}); use the unit 'block'`);
  }
  if (!ignore) return units;
  // --ignore names units as it names layers: by the unit's name or one of its residual joins (a pattern on the
  // weights of some layers, e.g. attention projections kept whole, leaves the blocks removable)
  const kept = units.filter((u) => !ignore.test(u.name) && !u.joins.some((j) => ignore.test(j)));
  if (kept.length === 0) throw new ShearsError(`every removable depth unit of the model (${units.length}) matches --ignore /${ignore.source}/ by its name or residual join: depth pruning cannot remove anything`);
  return kept;
}

/** Removes the branch of the named join nodes (in place on the given model). */
export function removeBlocks(model: Model, joins: string[], inputShapes: Record<string, number[]>): void {
  for (const name of joins) {
    const blocks = findResidualBlocks(model, inputShapes);
    const b = blocks.find((x) => x.join === name);
    if (!b) throw new ShearsError(`'${name}' is not a removable residual block of this model`);
    const g = model.graph;
    const join = g.nodes.find((n) => n.name === name)!;
    const y = join.outputs[0]!;
    g.nodes = g.nodes.filter((n) => n !== join);
    replaceAllUses(g, y, b.skip);
    removeDeadNodes(g);
  }
}

export interface ChooseOptions {
  unit?: BlockUnit;
  /** Scores by unit name (smaller: removed first), e.g. block influence; default: the units' parameter RMS. */
  scores?: ReadonlyMap<string, number>;
  /** Units with a node or weight whose name matches are kept (--ignore). */
  ignore?: RegExp;
}

/**
 * The K least important depth units, as the residual joins to remove (one unit at a time, so a unit inside an
 * already chosen branch is not counted twice).
 */
export function chooseUnits(model: Model, k: number, inputShapes: Record<string, number[]>, opts: ChooseOptions = {}): DepthUnit[] {
  const units = depthUnits(model, inputShapes, opts.unit ?? 'block', opts.ignore);
  if (k > units.length) throw new ShearsError(`cannot remove ${k} ${opts.unit === 'attention' || opts.unit === 'mlp' ? `${opts.unit} sub-blocks` : 'residual blocks'}: the model has ${units.length} removable ones${opts.ignore ? ' besides those --ignore keeps' : ''}`);
  const score = (u: DepthUnit) => {
    const s = opts.scores?.get(u.name);
    if (opts.scores && s === undefined) throw new ShearsError(`no score for the depth unit '${u.name}' (the scores were computed for another model or unit)`);
    return s ?? u.score;
  };
  const order = units.map((u, i) => ({ u, i, s: score(u) })).sort((a, b) => a.s - b.s || a.i - b.i);
  const blocks = findResidualBlocks(model, inputShapes);
  const branchOf = new Map(blocks.map((b) => [b.join, b.branch]));
  const removedNodes = new Set<string>();
  const chosen: DepthUnit[] = [];
  for (const { u } of order) {
    if (chosen.length >= k) break;
    if (u.joins.some((j) => removedNodes.has(j))) continue;
    chosen.push(u);
    for (const j of u.joins) for (const n of branchOf.get(j) ?? []) removedNodes.add(n);
  }
  return chosen;
}

/** The residual joins of the K least important depth units (see chooseUnits). */
export function chooseBlocks(model: Model, k: number, inputShapes: Record<string, number[]>, opts: ChooseOptions = {}): string[] {
  return chooseUnits(model, k, inputShapes, opts).flatMap((u) => u.joins);
}
