/**
 * The dependency graph for structured pruning, on the ONNX graph itself.
 *
 * Concepts (named after Torch-Pruning's DepGraph, applied to tensors instead of modules):
 * - a Space is one axis of one value (an activation or an initializer) whose indices the pruner may remove;
 * - op rules (OpDef.channels) tie elements of spaces together with index mappings (ChannelLink);
 * - a Unit is a set of tied elements (a union-find class): removing a unit removes all its elements at once,
 *   e.g. output channel 5 of a Conv, its bias and BN entries, input channel 5 of every consumer, and the
 *   matching channel 5+k of a Concat output and the 49-feature block of a Flatten->Gemm;
 * - a Group is a connected set of spaces (their units are ranked and rounded together).
 * Spaces start from parameters (initializers that rules tie to an axis) and spread through the rules. A space
 * touching a model input/output, an op without a rule, or an axis a rule does not mention is frozen (with the
 * reason), and so is every unit that has an element there.
 */
import type { Graph, Model, Node, TensorType } from '../ir/graph.js';
import { opsetVersion, subgraphs } from '../ir/graph.js';
import { nodeReads } from '../ir/edit.js';
import { isFloatType } from '../ir/dtype.js';
import { numel, type Tensor } from '../ir/tensor.js';
import { isQuantizedNode, opDef } from '../ops/registry.js';
import type { AxisRef, ChannelContext, ChannelInfo, ChannelLink, SplitUnits } from '../ops/types.js';

export interface Space {
  id: number;
  value: string;
  axis: number;
  size: number;
  /** First global element id. */
  offset: number;
  /** The value is a float initializer (a parameter). */
  param: boolean;
  /** How the parameter axis relates to the channel ('writes': produces it, 'reads': consumes it). */
  role?: 'reads' | 'writes';
  group: number;
}

export interface Unit {
  id: number;
  group: number;
  /** Global element ids. */
  elements: number[];
  /** A stable name: the first parameter element, as `value@axis:index`. */
  key: string;
}

export interface Group {
  id: number;
  spaces: Space[];
  /** Prunable units. */
  units: Unit[];
  /** Number of frozen classes (channels that stay) among the group's elements. */
  frozenUnits: number;
  /** Names of nodes that hold this group's parameters (for reports and --ignore). */
  nodes: string[];
}

export interface Frozen {
  value: string;
  axis: number;
  reason: string;
  node?: string;
}

export interface ShapeSource {
  /** Types of values (static dims where known). */
  types: Map<string, TensorType>;
  /** Known constant values (initializers and folded constants). */
  constants: Map<string, Tensor>;
}

export interface DepGraph {
  model: Model;
  spaces: Space[];
  spaceOf: Map<string, Space>;
  /** Element id -> space id. */
  elementSpace: Int32Array;
  /** Element id -> unit id (-1: frozen or not a unit). */
  elementUnit: Int32Array;
  units: Unit[];
  groups: Group[];
  frozen: Frozen[];
  /** Per node: the links activated (for surgery hooks). */
  shapes: ShapeSource;
}

export const spaceKey = (value: string, axis: number): string => `${value}@${axis}`;

interface NodeRule {
  info?: ChannelInfo;
  reason?: string;
}

class UnionFind {
  parent: Int32Array;
  constructor(n: number) {
    this.parent = new Int32Array(n);
    for (let i = 0; i < n; i++) this.parent[i] = i;
  }
  find(x: number): number {
    const p = this.parent;
    while (p[x] !== x) {
      p[x] = p[p[x]!]!;
      x = p[x]!;
    }
    return x;
  }
  union(a: number, b: number): void {
    const ra = this.find(a), rb = this.find(b);
    if (ra !== rb) this.parent[Math.max(ra, rb)] = Math.min(ra, rb);
  }
}

function staticDims(t: TensorType | undefined): number[] | undefined {
  if (!t?.shape) return undefined;
  return t.shape.map((d) => (typeof d === 'number' ? d : -1));
}

export interface BuildOptions {
  /** Nodes whose parameters must not be pruned (matched against node names and their initializer names). */
  ignore?: RegExp;
  /** What splits of an axis into blocks x positions prune first (ChannelContext.splitUnits; default 'blocks'). */
  splitUnits?: SplitUnits;
  /** Let normalised axes lose features (ChannelContext.normalized: the hidden size of a transformer). */
  normalized?: boolean;
}

/** Parameter elements that belong to prunable units (how much of the model structured pruning can reach). */
function prunableParameterElements(dg: DepGraph): number {
  let n = 0;
  for (const s of dg.spaces) if (s.param) for (let j = 0; j < s.size; j++) if (dg.elementUnit[s.offset + j]! >= 0) n++;
  return n;
}

/**
 * Builds the dependency graph of a model, given static shapes for its values. Where a node's coupling leaves
 * an axis of that node frozen and its rule offers alternatives (ChannelInfo.alternatives), the next one is
 * tried, and kept when it makes more parameters prunable (a few rebuilds at most).
 */
export function buildDepGraph(model: Model, shapes: ShapeSource, opts: BuildOptions = {}): DepGraph {
  let choice = new Map<Node, number>();
  let last = buildWith(model, shapes, opts, choice);
  let best = last;
  let bestScore = prunableParameterElements(best.dg);
  for (let round = 0; round < 6; round++) {
    const next = new Map(choice);
    let changed = false;
    for (const n of last.blamed) {
      const k = next.get(n) ?? 0;
      if (k < (last.alternatives.get(n) ?? 0)) {
        next.set(n, k + 1);
        changed = true;
      }
    }
    if (!changed) break;
    choice = next;
    last = buildWith(model, shapes, opts, choice);
    const score = prunableParameterElements(last.dg);
    if (score > bestScore) {
      best = last;
      bestScore = score;
    }
  }
  return best.dg;
}

interface Built {
  dg: DepGraph;
  /** Nodes where an axis froze because of their own coupling. */
  blamed: Set<Node>;
  /** Number of alternative couplings per node that has some. */
  alternatives: Map<Node, number>;
}

function buildWith(model: Model, shapes: ShapeSource, opts: BuildOptions, choice: ReadonlyMap<Node, number>): Built {
  const g: Graph = model.graph;
  const blamed = new Set<Node>();
  const alternatives = new Map<Node, number>();
  const producer = new Map<string, { node: Node; index: number }>();
  const consumers = new Map<string, { node: Node; index: number }[]>();
  for (const n of g.nodes) {
    n.outputs.forEach((o, i) => o && producer.set(o, { node: n, index: i }));
    const add = (v: string, i: number) => {
      let l = consumers.get(v);
      if (!l) consumers.set(v, (l = []));
      l.push({ node: n, index: i });
    };
    n.inputs.forEach((v, i) => v && add(v, i));
    // Values a subgraph reads from this scope make the node a consumer (index -1: it has no rule for them).
    if (subgraphs(n).length) for (const v of nodeReads(n)) if (!n.inputs.includes(v)) add(v, -1);
  }
  const graphIO = new Map<string, string>();
  // Old exports list initializers among the graph inputs: those are parameters, not model inputs.
  for (const i of g.inputs) if (!g.initializers.has(i.name)) graphIO.set(i.name, 'model input');
  for (const o of g.outputs) graphIO.set(o.name, 'model output');
  const isParam = (v: string) => {
    const t = g.initializers.get(v);
    return t !== undefined && isFloatType(t.dtype) && numel(t.dims) > 1;
  };
  const shapeOf = (v: string): number[] | undefined => {
    const t = g.initializers.get(v);
    if (t) return t.dims;
    const c = shapes.constants.get(v);
    if (c) return c.dims;
    return staticDims(shapes.types.get(v));
  };

  // Rules, computed once per node.
  const rules = new Map<Node, NodeRule>();
  const ruleOf = (n: Node): NodeRule => {
    let r = rules.get(n);
    if (r) return r;
    const def = opDef(n);
    if (!def?.channels && subgraphs(n).length) {
      // Channels that reach an If branch or a loop body are kept whole: shears does not prune through subgraphs.
      r = { reason: `read inside an ${n.opType} subgraph (an If branch or loop body: structured pruning does not reach into subgraphs)` };
    } else if (!def?.channels) {
      r = {
        reason: isQuantizedNode(n) ? `${n.opType} computes on quantized values (prune the float model, then quantize)`
          : def ? `${n.opType} has no channel rule` : `unknown op ${n.domain ? n.domain + '.' : ''}${n.opType}`,
      };
    }
    else {
      const ctx: ChannelContext = {
        node: n,
        opset: opsetVersion(model, n.domain),
        inShape: (i) => (n.inputs[i] ? shapeOf(n.inputs[i]!) : undefined),
        outShape: (i) => (n.outputs[i] ? shapeOf(n.outputs[i]!) : undefined),
        constant: (i) => (n.inputs[i] ? (g.initializers.get(n.inputs[i]!) ?? shapes.constants.get(n.inputs[i]!)) : undefined),
        splitUnits: opts.splitUnits ?? 'blocks',
        normalized: opts.normalized ?? false,
      };
      let res: ChannelInfo | string;
      try {
        res = def.channels(ctx);
      } catch (e) {
        res = `rule failed: ${(e as Error).message}`;
      }
      if (typeof res !== 'string' && res.alternatives?.length) {
        alternatives.set(n, res.alternatives.length);
        const k = choice.get(n) ?? 0;
        if (k > 0) res = res.alternatives[Math.min(k, res.alternatives.length) - 1]!;
      }
      r = typeof res === 'string' ? { reason: `${n.opType}: ${res}` } : { info: res };
    }
    rules.set(n, r);
    return r;
  };
  const refValue = (n: Node, ref: AxisRef): string | undefined => (ref.io === 'in' ? n.inputs[ref.index] : n.outputs[ref.index]) || undefined;

  // ---- spaces, spread from parameters through the rules
  const spaces: Space[] = [];
  const spaceOf = new Map<string, Space>();
  const frozen: Frozen[] = [];
  const frozenSpaces = new Map<number, Frozen>();
  const elementFreezes: { space: Space; indices: number[]; reason: string; node: string }[] = [];
  const activeLinks: { link: ChannelLink; a: Space; b: Space; node: Node }[] = [];
  const activeLinkSet = new Set<ChannelLink>();
  let nElements = 0;
  const queue: Space[] = [];

  const freeze = (s: Space, reason: string, node?: Node) => {
    if (node && rules.get(node)?.info) blamed.add(node);
    if (frozenSpaces.has(s.id)) return;
    const f: Frozen = { value: s.value, axis: s.axis, reason, ...(node ? { node: node.name || node.opType } : {}) };
    frozenSpaces.set(s.id, f);
    frozen.push(f);
  };
  const getSpace = (value: string, axis: number, create: boolean): Space | undefined | null => {
    const key = spaceKey(value, axis);
    const s = spaceOf.get(key);
    if (s || !create) return s;
    const dims = shapeOf(value);
    if (!dims || axis >= dims.length || dims[axis]! < 0) return null;
    if (dims[axis]! <= 1) return undefined;
    const ns: Space = { id: spaces.length, value, axis, size: dims[axis]!, offset: nElements, param: isParam(value), group: -1 };
    nElements += ns.size;
    spaces.push(ns);
    spaceOf.set(key, ns);
    queue.push(ns);
    return ns;
  };

  // Seeds: every link of every node that ties a parameter axis.
  for (const n of g.nodes) {
    const r = ruleOf(n);
    if (!r.info) continue;
    for (const l of r.info.links) {
      for (const ref of [l.a, l.b]) {
        const v = refValue(n, ref);
        if (v && isParam(v)) getSpace(v, ref.axis, true);
      }
    }
  }

  const visited = new Set<string>();
  const nodeIndex = new Map<Node, number>();
  g.nodes.forEach((n, i) => nodeIndex.set(n, i));
  const touch = (s: Space, n: Node) => {
    const key = `${s.id}|${nodeIndex.get(n)}`;
    if (visited.has(key)) return;
    visited.add(key);
    const r = ruleOf(n);
    if (!r.info) {
      freeze(s, r.reason!, n);
      return;
    }
    let mentioned = false;
    for (const l of r.info.links) {
      const va = refValue(n, l.a), vb = refValue(n, l.b);
      const hitA = va === s.value && l.a.axis === s.axis, hitB = vb === s.value && l.b.axis === s.axis;
      if (!hitA && !hitB) continue;
      mentioned = true;
      if (activeLinkSet.has(l)) continue;
      const other = hitA ? l.b : l.a;
      const ov = hitA ? vb : va;
      if (!ov) continue;
      const os = getSpace(ov, other.axis, true);
      if (os === null) {
        freeze(s, `${n.opType} '${n.name}': size of the coupled axis is unknown`, n);
        continue;
      }
      if (os === undefined) {
        // The other side has size 1: only a broadcast is fine (map into it), an identity link is a mismatch.
        freeze(s, `${n.opType} '${n.name}': coupled to an axis of size 1`, n);
        continue;
      }
      const a = hitA ? s : os, b = hitA ? os : s;
      if (l.map ? l.map.length !== b.size : a.size !== b.size) {
        freeze(s, `${n.opType} '${n.name}': coupled axes differ in size`, n);
        continue;
      }
      activeLinkSet.add(l);
      activeLinks.push({ link: l, a, b, node: n });
      if (l.role && (a.param !== b.param)) (a.param ? a : b).role ??= l.role;
    }
    for (const f of r.info.free ?? []) if (refValue(n, f) === s.value && f.axis === s.axis) mentioned = true;
    for (const f of r.info.frozen ?? []) {
      if (refValue(n, f.ref) === s.value && f.ref.axis === s.axis) {
        mentioned = true;
        if (f.indices) elementFreezes.push({ space: s, indices: f.indices, reason: `${n.opType} '${n.name}': ${f.reason}`, node: n.name });
        else freeze(s, `${n.opType} '${n.name}': ${f.reason}`, n);
      }
    }
    if (!mentioned) freeze(s, `${n.opType} '${n.name}' cannot remove indices on axis ${s.axis} of '${s.value}'`, n);
  };

  while (queue.length) {
    const s = queue.shift()!;
    const io = graphIO.get(s.value);
    if (io) freeze(s, io);
    const p = producer.get(s.value);
    if (p) touch(s, p.node);
    for (const c of consumers.get(s.value) ?? []) touch(s, c.node);
    if (opts.ignore && s.param) {
      const users = (consumers.get(s.value) ?? []).map((c) => c.node.name);
      if (opts.ignore.test(s.value) || users.some((u) => opts.ignore!.test(u))) freeze(s, 'ignored (--ignore)');
    }
  }

  // ---- unions
  const uf = new UnionFind(nElements);
  const elementSpace = new Int32Array(nElements);
  for (const s of spaces) elementSpace.fill(s.id, s.offset, s.offset + s.size);
  for (const { link, a, b } of activeLinks) {
    if (link.map) {
      const m = link.map;
      for (let j = 0; j < b.size; j++) if (m[j]! >= 0) uf.union(a.offset + m[j]!, b.offset + j);
    } else for (let j = 0; j < b.size; j++) uf.union(a.offset + j, b.offset + j);
  }

  // Output elements a node produces without tying them to an input freeze (padding, constants).
  const covered = new Map<number, Uint8Array>();
  const outOwner = new Map<number, Node>();
  for (const s of spaces) {
    const p = producer.get(s.value);
    if (p) outOwner.set(s.id, p.node);
  }
  for (const { link, a, b, node } of activeLinks) {
    for (const [ref, sp, other] of [[link.a, a, link.b], [link.b, b, link.a]] as const) {
      if (ref.io !== 'out' || other.io !== 'in' || outOwner.get(sp.id) !== node) continue;
      let c = covered.get(sp.id);
      if (!c) covered.set(sp.id, (c = new Uint8Array(sp.size)));
      if (sp === b && link.map) {
        for (let j = 0; j < sp.size; j++) if (link.map[j]! >= 0) c[j] = 1;
      } else if (sp === a && link.map) {
        for (let j = 0; j < link.map.length; j++) if (link.map[j]! >= 0) c[link.map[j]!] = 1;
      } else c.fill(1);
    }
  }
  const frozenRoot = new Uint8Array(nElements);
  for (const s of spaces) {
    if (!outOwner.has(s.id)) continue;
    const c = covered.get(s.id);
    const idx: number[] = [];
    for (let j = 0; j < s.size; j++) if (!c || !c[j]) idx.push(j);
    if (idx.length === s.size && !frozenSpaces.has(s.id)) {
      const n = outOwner.get(s.id)!;
      freeze(s, `${n.opType} '${n.name}' does not derive axis ${s.axis} of its output from its inputs`, n);
    } else if (idx.length) elementFreezes.push({ space: s, indices: idx, reason: 'not derived from an input channel', node: outOwner.get(s.id)!.name });
  }
  for (const [sid] of frozenSpaces) {
    const s = spaces[sid]!;
    for (let j = 0; j < s.size; j++) frozenRoot[uf.find(s.offset + j)] = 1;
  }
  for (const f of elementFreezes) for (const j of f.indices) if (j >= 0 && j < f.space.size) frozenRoot[uf.find(f.space.offset + j)] = 1;
  for (const f of elementFreezes) {
    if (!frozen.some((x) => x.value === f.space.value && x.axis === f.space.axis)) {
      frozen.push({ value: f.space.value, axis: f.space.axis, reason: `${f.reason} (indices ${f.indices.slice(0, 8).join(',')}${f.indices.length > 8 ? ',...' : ''})`, node: f.node });
    }
  }

  // ---- groups: connected spaces
  const suf = new UnionFind(spaces.length);
  for (const { a, b } of activeLinks) suf.union(a.id, b.id);
  const groupIdOfRoot = new Map<number, number>();
  const groups: Group[] = [];
  for (const s of spaces) {
    const r = suf.find(s.id);
    let gid = groupIdOfRoot.get(r);
    if (gid === undefined) {
      gid = groups.length;
      groupIdOfRoot.set(r, gid);
      groups.push({ id: gid, spaces: [], units: [], frozenUnits: 0, nodes: [] });
    }
    s.group = gid;
    groups[gid]!.spaces.push(s);
  }

  // ---- units: classes with a parameter element, not frozen
  const elementUnit = new Int32Array(nElements).fill(-1);
  const units: Unit[] = [];
  const unitOfRoot = new Map<number, Unit>();
  const hasParam = new Uint8Array(nElements);
  for (const s of spaces) if (s.param) for (let j = 0; j < s.size; j++) hasParam[uf.find(s.offset + j)] = 1;
  const frozenCounted = new Set<number>();
  for (const s of spaces) {
    for (let j = 0; j < s.size; j++) {
      const e = s.offset + j;
      const r = uf.find(e);
      if (frozenRoot[r] || !hasParam[r]) {
        if (frozenRoot[r] && !frozenCounted.has(r)) {
          frozenCounted.add(r);
          groups[s.group]!.frozenUnits++;
        }
        continue;
      }
      let u = unitOfRoot.get(r);
      if (!u) {
        u = { id: units.length, group: s.group, elements: [], key: '' };
        unitOfRoot.set(r, u);
        units.push(u);
        groups[s.group]!.units.push(u);
      }
      u.elements.push(e);
      elementUnit[e] = u.id;
      if (!u.key && s.param) u.key = `${s.value}@${s.axis}:${j}`;
    }
  }
  for (const gr of groups) {
    const names = new Set<string>();
    for (const s of gr.spaces) if (s.param) for (const c of consumers.get(s.value) ?? []) names.add(c.node.name || c.node.opType);
    gr.nodes = [...names];
  }
  return { dg: { model, spaces, spaceOf, elementSpace, elementUnit, units, groups, frozen, shapes }, blamed, alternatives };
}

/** Kept indices per space for a set of removed units (spaces that keep everything are absent). */
export function keptIndices(dg: DepGraph, removed: Set<number>): Map<number, Int32Array> {
  const out = new Map<number, Int32Array>();
  if (removed.size === 0) return out;
  for (const s of dg.spaces) {
    let drop = 0;
    for (let j = 0; j < s.size; j++) {
      const u = dg.elementUnit[s.offset + j]!;
      if (u >= 0 && removed.has(u)) drop++;
    }
    if (drop === 0) continue;
    const kept = new Int32Array(s.size - drop);
    let k = 0;
    for (let j = 0; j < s.size; j++) {
      const u = dg.elementUnit[s.offset + j]!;
      if (!(u >= 0 && removed.has(u))) kept[k++] = j;
    }
    out.set(s.id, kept);
  }
  return out;
}
