import { ShearsError } from '../errors.js';
import { DataType } from './dtype.js';
import { subgraphs, type Graph, type Node } from './graph.js';
import { numel } from './tensor.js';

/**
 * Names a subgraph reads from enclosing scopes (not produced inside it, not its own inputs or initializers),
 * recursively. Such reads make the owning node a consumer of those values.
 */
export function outerScopeReads(g: Graph): Set<string> {
  const local = new Set<string>();
  for (const i of g.inputs) local.add(i.name);
  for (const k of g.initializers.keys()) local.add(k);
  for (const n of g.nodes) for (const o of n.outputs) if (o) local.add(o);
  const reads = new Set<string>();
  for (const n of g.nodes) {
    for (const i of n.inputs) if (i && !local.has(i)) reads.add(i);
    for (const sg of subgraphs(n)) for (const r of outerScopeReads(sg)) if (!local.has(r)) reads.add(r);
  }
  for (const o of g.outputs) if (!local.has(o.name)) reads.add(o.name);
  return reads;
}

/** Every value a node reads: its explicit inputs plus what its subgraphs read from the outer scope. */
export function nodeReads(node: Node): string[] {
  const sgs = subgraphs(node);
  const reads = node.inputs.filter((i) => i !== '');
  if (sgs.length === 0) return reads;
  const set = new Set(reads);
  for (const sg of sgs) for (const r of outerScopeReads(sg)) set.add(r);
  return [...set];
}

/** Producer and consumer maps of one graph level. Derived state: rebuild after edits. */
export class GraphIndex {
  readonly producer = new Map<string, Node>();
  readonly consumers = new Map<string, Node[]>();
  constructor(readonly graph: Graph) {
    for (const n of graph.nodes) {
      for (const o of n.outputs) if (o) this.producer.set(o, n);
      for (const i of nodeReads(n)) {
        let list = this.consumers.get(i);
        if (!list) this.consumers.set(i, (list = []));
        if (!list.includes(n)) list.push(n);
      }
    }
  }
  consumersOf(name: string): Node[] {
    return this.consumers.get(name) ?? [];
  }
  isGraphOutput(name: string): boolean {
    return this.graph.outputs.some((o) => o.name === name);
  }
}

/**
 * Nodes in topological order (stable: keeps the given order where it is already valid).
 * Throws a ShearsError naming a node on a cycle.
 */
export function topoSort(graph: Graph): Node[] {
  const producer = new Map<string, number>();
  graph.nodes.forEach((n, i) => n.outputs.forEach((o) => o && producer.set(o, i)));
  const reads = graph.nodes.map((n) => nodeReads(n));
  const indeg = new Array<number>(graph.nodes.length).fill(0);
  const users: number[][] = graph.nodes.map(() => []);
  reads.forEach((rs, i) => {
    const deps = new Set<number>();
    for (const r of rs) {
      const p = producer.get(r);
      if (p !== undefined) deps.add(p);
    }
    for (const p of deps) {
      indeg[i]!++;
      users[p]!.push(i);
    }
  });
  // A min-heap on the original index keeps the existing order when it is already topological.
  const heap: number[] = [];
  const push = (v: number) => {
    heap.push(v);
    let i = heap.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (heap[p]! <= heap[i]!) break;
      [heap[p], heap[i]] = [heap[i]!, heap[p]!];
      i = p;
    }
  };
  const pop = (): number => {
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < heap.length && heap[l]! < heap[m]!) m = l;
        if (r < heap.length && heap[r]! < heap[m]!) m = r;
        if (m === i) break;
        [heap[m], heap[i]] = [heap[i]!, heap[m]!];
        i = m;
      }
    }
    return top;
  };
  indeg.forEach((d, i) => d === 0 && push(i));
  const order: Node[] = [];
  while (heap.length) {
    const i = pop();
    order.push(graph.nodes[i]!);
    for (const u of users[i]!) if (--indeg[u]! === 0) push(u);
  }
  if (order.length !== graph.nodes.length) {
    const stuck = graph.nodes.find((_, i) => indeg[i]! > 0)!;
    throw new ShearsError('the graph has a cycle', { node: stuck.name || stuck.opType });
  }
  return order;
}

/** Sorts graph.nodes in place topologically. */
export function sortGraph(graph: Graph): void {
  graph.nodes = topoSort(graph);
}

/**
 * Rewrites every read of `from` (node inputs, subgraph reads, graph outputs) to `to`. The node that produces
 * `to` keeps reading `from` (so `to = f(from)` can be spliced in after `from` without making a cycle). A graph
 * output keeps its name: its old producer's output is renamed and an Identity carries `to` under the name.
 */
export function replaceAllUses(graph: Graph, from: string, to: string): void {
  const producesTo = (n: Node) => n.outputs.includes(to);
  for (const n of graph.nodes) {
    if (producesTo(n)) continue;
    for (let i = 0; i < n.inputs.length; i++) if (n.inputs[i] === from) n.inputs[i] = to;
    for (const sg of subgraphs(n)) replaceOuterReads(sg, from, to);
  }
  if (!graph.outputs.some((o) => o.name === from)) return;
  const producer = graph.nodes.find((n) => n.outputs.includes(from));
  if (producer) {
    const renamed = uniqueName(graph, `${from}_replaced`);
    producer.outputs = producer.outputs.map((o) => (o === from ? renamed : o));
    for (const n of graph.nodes) if (producesTo(n)) n.inputs = n.inputs.map((i) => (i === from ? renamed : i));
  }
  graph.nodes.push({ name: uniqueName(graph, `${from}_identity`), opType: 'Identity', domain: '', inputs: [to], outputs: [from], attrs: new Map() });
  usedCache.delete(graph);
}

function replaceOuterReads(g: Graph, from: string, to: string): void {
  const shadowed = g.inputs.some((i) => i.name === from) || g.initializers.has(from) ||
    g.nodes.some((n) => n.outputs.includes(from));
  if (shadowed) return;
  for (const n of g.nodes) {
    for (let i = 0; i < n.inputs.length; i++) if (n.inputs[i] === from) n.inputs[i] = to;
    for (const sg of subgraphs(n)) replaceOuterReads(sg, from, to);
  }
  for (const o of g.outputs) if (o.name === from) o.name = to;
}

/**
 * Removes nodes whose outputs nobody reads (graph outputs count as read), then initializers and value infos
 * nobody references. Returns the number of nodes removed.
 */
export function removeDeadNodes(graph: Graph): number {
  const live = new Set<string>(graph.outputs.map((o) => o.name));
  const keep: Node[] = [];
  const order = topoSort(graph);
  for (let i = order.length - 1; i >= 0; i--) {
    const n = order[i]!;
    if (n.outputs.some((o) => o && live.has(o))) {
      keep.push(n);
      for (const r of nodeReads(n)) live.add(r);
    }
  }
  const removed = graph.nodes.length - keep.length;
  const kept = new Set(keep);
  graph.nodes = graph.nodes.filter((n) => kept.has(n));
  for (const k of [...graph.initializers.keys()]) if (!live.has(k)) graph.initializers.delete(k);
  const produced = new Set<string>();
  for (const n of graph.nodes) for (const o of n.outputs) produced.add(o);
  for (const k of [...graph.valueInfo.keys()]) if (!produced.has(k)) graph.valueInfo.delete(k);
  return removed;
}

/** A value or node name not yet used in the graph (values, nodes and initializers share one namespace here). */
export function uniqueName(graph: Graph, base: string): string {
  const used = usedNames(graph);
  if (!used.has(base)) return base;
  for (let i = 1; ; i++) if (!used.has(`${base}_${i}`)) return `${base}_${i}`;
}

const usedCache = new WeakMap<Graph, { count: number; names: Set<string> }>();
function usedNames(graph: Graph): Set<string> {
  const cached = usedCache.get(graph);
  const count = graph.nodes.length + graph.initializers.size;
  if (cached && cached.count === count) return cached.names;
  const names = graphNames(graph);
  usedCache.set(graph, { count, names });
  return names;
}

/** Every input, initializer, node and output name of the graph, computed now (a new set the caller may extend). */
export function graphNames(graph: Graph): Set<string> {
  const names = new Set<string>();
  for (const i of graph.inputs) names.add(i.name);
  for (const k of graph.initializers.keys()) names.add(k);
  for (const n of graph.nodes) {
    names.add(n.name);
    for (const o of n.outputs) names.add(o);
  }
  return names;
}

/** Inserts nodes right before `before` (or at the end), keeping the list topologically ordered. */
export function insertNodes(graph: Graph, nodes: Node[], before?: Node): void {
  const at = before ? graph.nodes.indexOf(before) : -1;
  if (at < 0) graph.nodes.push(...nodes);
  else graph.nodes.splice(at, 0, ...nodes);
  usedCache.delete(graph);
}

/** Structural invariants every pass must keep. Returns the problems found (empty: valid). */
export function checkGraph(graph: Graph, outer: Set<string> = new Set()): string[] {
  const problems: string[] = [];
  const defined = new Set<string>(outer);
  for (const i of graph.inputs) defined.add(i.name);
  for (const k of graph.initializers.keys()) defined.add(k);
  const producedBy = new Map<string, string>();
  for (const n of graph.nodes) {
    for (const o of n.outputs) {
      if (!o) continue;
      if (producedBy.has(o)) problems.push(`value '${o}' is produced twice (${producedBy.get(o)} and ${n.name})`);
      if (graph.inputs.some((i) => i.name === o)) problems.push(`value '${o}' is both a graph input and produced by ${n.name}`);
      producedBy.set(o, n.name);
    }
  }
  let order: Node[] = graph.nodes;
  try {
    order = topoSort(graph);
  } catch (e) {
    problems.push((e as Error).message);
  }
  for (const n of order) {
    for (const i of n.inputs) if (i && !defined.has(i)) problems.push(`node '${n.name}' (${n.opType}) reads undefined value '${i}'`);
    for (const sg of subgraphs(n)) problems.push(...checkGraph(sg, new Set([...defined])).map((p) => `in a subgraph of '${n.name}': ${p}`));
    for (const o of n.outputs) if (o) defined.add(o);
  }
  for (const o of graph.outputs) if (!defined.has(o.name)) problems.push(`graph output '${o.name}' is never produced`);
  for (const [k, t] of graph.initializers) {
    const n = numel(t.dims);
    if (t.dims.some((d) => !Number.isInteger(d) || d < 0)) problems.push(`initializer '${k}' has bad dims [${t.dims}]`);
    else if (t.dtype === DataType.STRING && Array.isArray(t.data) && t.data.length !== n) problems.push(`initializer '${k}' holds ${t.data.length} strings for ${n} elements`);
  }
  return problems;
}

export function assertValid(graph: Graph): void {
  const p = checkGraph(graph);
  if (p.length) throw new Error(`invalid graph: ${p.slice(0, 5).join('; ')}`);
}
