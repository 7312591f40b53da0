/**
 * Layer-by-layer calibration passes without recomputing prefixes: the values on the frontier between computed and
 * not-yet-computed nodes (of the pruned and the dense model) are kept per calibration batch, and each step runs
 * only the nodes it still needs (the pruned model up to the next layer's input, the dense model up to that
 * layer's output) plus the statistics nodes, in one onnxruntime session. Nodes computed in a step are final:
 * they are ancestors of the current layer's input, and every layer before it is already repaired.
 * When the kept values would exceed the memory budget, the cache is dropped and later steps recompute from
 * the input.
 *
 * Without a dense model (each layer's target is its own dense weights on the pruned model's inputs, as Wanda and
 * SparseGPT do) only the pruned model runs. Each step's session holds only the weights of the nodes it runs:
 * lazy weights (ir/lazy.ts) are released once the session has them, so that a streamed run never holds more
 * than one step's weights.
 */
import { Emitter } from '../autodiff/emitter.js';
import { ShearsError } from '../errors.js';
import { DataType } from '../ir/dtype.js';
import { nodeReads, topoSort } from '../ir/edit.js';
import type { Graph, Model, Node, ValueInfo } from '../ir/graph.js';
import { opsetVersion } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import { releaseTensor } from '../ir/lazy.js';
import { createSession } from '../runtime/session.js';
import { DENSE_PREFIX, type LayerPair, type LayerStats, type StatsWanted } from './calib.js';

interface Side {
  model: Model;
  prefix: string;
  order: Node[];
  producer: Map<string, Node>;
  /** Nodes already computed (their outputs are final). */
  done: Set<Node>;
}

function side(model: Model, prefix: string): Side {
  const order = topoSort(model.graph);
  const producer = new Map<string, Node>();
  for (const n of order) {
    if ([...n.attrs.values()].some((a) => a.kind === 'graph' || a.kind === 'graphs')) {
      throw new ShearsError('repair does not support models with subgraphs (If/Loop/Scan) yet', { node: n.name });
    }
    for (const o of n.outputs) if (o) producer.set(o, n);
  }
  return { model, prefix, order, producer, done: new Set() };
}

/** Nodes (in topological order) not yet computed that `targets` need. */
function needed(s: Side, targets: string[]): Node[] {
  const want = new Set<Node>();
  const stack = [...targets];
  while (stack.length) {
    const v = stack.pop()!;
    const n = s.producer.get(v);
    if (!n || s.done.has(n) || want.has(n)) continue;
    want.add(n);
    for (const r of nodeReads(n)) stack.push(r);
  }
  return s.order.filter((n) => want.has(n));
}

function valueInfoOf(name: string, t: Tensor): ValueInfo {
  return { name, type: { elemType: t.dtype, shape: t.dims.map((_, i) => `${name}_d${i}`) } };
}

export class Stepper {
  private pruned: Side;
  private dense: Side | undefined;
  /** Kept values per batch, by (prefixed) value name. */
  private cache = new Map<string, Tensor[]>();
  private cacheBytes = 0;

  constructor(
    pruned: Model,
    /** The dense model run beside the pruned one (for its layers' outputs); undefined: none runs. */
    dense: Model | undefined,
    /** The model inputs (the same names in both models), fed from each batch. */
    inputNames: readonly string[],
    private readonly batches: Record<string, Tensor>[],
    private readonly opts: { threads?: number; memoryBudget?: number } = {},
    /** Dense input names that differ from the pruned model's: dense name -> pruned name. */
    private readonly denseRename: Readonly<Record<string, string>> = {},
  ) {
    this.pruned = side(pruned, '');
    this.dense = dense ? side(dense, DENSE_PREFIX) : undefined;
    this.inputNames = new Set(inputNames);
  }

  private readonly inputNames: Set<string>;

  private renamed(s: Side, v: string): string {
    if (v === '') return '';
    if (s === this.dense && this.denseRename[v] !== undefined) return this.denseRename[v];
    if (s === this.dense && this.inputNames.has(v)) return v;
    return `${s.prefix}${v}`;
  }

  /**
   * Runs one step: statistics of `pair` (the pruned layer's input patches, the dense layer's output) over every
   * calibration batch. `later` lists the layers still to come (their dense outputs must stay reachable).
   */
  async step(pair: LayerPair, want: StatsWanted, later: LayerPair[]): Promise<LayerStats> {
    const P = this.pruned;
    const D = this.dense;
    const x = pair.node.inputs[0]!;
    // with moments the layer itself runs: whatever feeds its other inputs (e.g. a bias through Identity) too
    const pNodes = needed(P, want.moments ? pair.node.inputs.filter((v) => v !== '') : [x]);
    // the dense side runs only when its outputs are wanted (one-shot pruning needs the pruned side alone)
    if (!D && (want.cross || want.moments)) throw new Error('repair: cross statistics and moments need the dense model (internal)');
    const dNodes = D && (want.cross || want.moments) ? needed(D, [pair.dense.outputs[0]!]) : [];
    // the pruned layer itself runs in the step when its outputs are wanted (moments), but is not marked done
    const extra: Node[] = want.moments ? [pair.node] : [];
    const pg = P.model.graph;
    const dg = D?.model.graph;
    const nodes: Node[] = [];
    const inits = new Map<string, Tensor>();
    const produced = new Set<string>();
    const addNodes = (s: Side, list: Node[]) => {
      const g = s.model.graph;
      for (const n of list) {
        nodes.push(s.prefix ? { ...n, name: `${s.prefix}${n.name}`, inputs: n.inputs.map((v) => this.renamed(s, v)), outputs: n.outputs.map((v) => this.renamed(s, v)) } : n);
        for (const o of n.outputs) if (o) produced.add(this.renamed(s, o));
        for (const r of n.inputs) {
          const t = r ? g.initializers.get(r) : undefined;
          if (t) inits.set(this.renamed(s, r), t);
        }
      }
    };
    addNodes(P, [...pNodes, ...extra.filter((n) => !pNodes.includes(n))]);
    if (D) addNodes(D, dNodes);
    // statistics nodes
    const taken = new Set<string>([...produced, ...inits.keys(), ...this.cache.keys(), ...this.inputNames]);
    const e = new Emitter(DataType.FLOAT, taken, 'repair/');
    const opset = opsetVersion(P.model);
    const reduceSum = (v: string, axis: number) => (opset >= 13 ? e.op('ReduceSum', [v, e.constI([axis])], { keepdims: 0 }) : e.op('ReduceSum', [v], { axes: [axis], keepdims: 0 }));
    const outs: Record<string, string> = {};
    const p = pair.rule.patches(pair.ctx, pair.form, e, x);
    outs['shape'] = e.op('Shape', [p]);
    // X Y^T of [G, a, M] and [G, b, M]: one Gemm with transB when G = 1 (no transposed copy), else batched MatMul
    const single = pair.form.groups === 1;
    const to2d = (v: string, rows: number) => e.op('Reshape', [v, e.constI([rows, -1])]);
    const p2 = single ? to2d(p, pair.form.k) : p;
    const gram = (a: string, b: string) => (single ? e.op('Gemm', [a, b], { transB: 1 }) : e.op('MatMul', [a, e.op('Transpose', [b], { perm: [0, 2, 1] })]));
    if (want.hessian || want.cross) {
      outs['h'] = gram(p2, p2);
      outs['sp'] = reduceSum(p, 2);
    }
    if (want.norms) outs['hd'] = reduceSum(e.op('Mul', [p, p]), 2);
    if (D && (want.cross || want.moments)) {
      const yd = pair.rule.outputs(pair.denseCtx, pair.denseForm, e, this.renamed(D, pair.dense.outputs[0]!));
      if (want.cross) outs['c'] = gram(p2, single ? to2d(yd, pair.denseForm.outPerGroup) : yd);
      outs['syd'] = reduceSum(yd, 2);
      if (want.moments) outs['qyd'] = reduceSum(e.op('Mul', [yd, yd]), 2);
    }
    if (want.moments) {
      const yp = pair.rule.outputs(pair.ctx, pair.form, e, pair.node.outputs[0]!);
      outs['syp'] = reduceSum(yp, 2);
      outs['qyp'] = reduceSum(e.op('Mul', [yp, yp]), 2);
    }
    for (const [k, t] of e.initializers) inits.set(k, t);
    nodes.push(...e.nodes);
    // inputs: values read but neither produced here nor initializers
    const inputs: ValueInfo[] = [];
    const feedsFrom = new Map<string, Tensor[]>();
    const seen = new Set<string>();
    for (const n of nodes) {
      for (const r of n.inputs) {
        if (!r || produced.has(r) || inits.has(r) || seen.has(r) || e.initializers.has(r)) continue;
        if (e.nodes.some((m) => m.outputs.includes(r))) continue;
        seen.add(r);
        if (this.inputNames.has(r)) continue;
        const c = this.cache.get(r);
        if (!c) throw new Error(`repair: value '${r}' is neither computed nor kept (internal)`);
        feedsFrom.set(r, c);
        inputs.push(valueInfoOf(r, c[0]!));
      }
    }
    for (const name of [...this.inputNames].reverse()) {
      if (!seen.has(name)) continue;
      const info = pg.inputs.find((i) => i.name === name) ?? dg!.inputs.find((i) => i.name === name)!;
      inputs.unshift({ ...info });
    }
    // mark computed, and decide which new values to keep
    for (const n of pNodes) P.done.add(n);
    for (const n of dNodes) D!.done.add(n);
    const sides = D ? [P, D] : [P];
    const laterDenseOutputs = new Set(D ? later.map((l) => this.renamed(D, l.dense.outputs[0]!)) : []);
    const stillRead = new Set<string>();
    for (const s of sides) for (const n of s.order) if (!s.done.has(n)) for (const r of nodeReads(n)) stillRead.add(this.renamed(s, r));
    for (const o of [...pg.outputs.map((v) => v.name)]) stillRead.add(o);
    if (D) for (const o of dg!.outputs.map((v) => this.renamed(D, v.name))) stillRead.add(o);
    const keepNew: string[] = [];
    for (const s of sides) {
      for (const n of s === P ? pNodes : dNodes) {
        for (const o of n.outputs) {
          const v = this.renamed(s, o);
          if (o && (stillRead.has(v) || laterDenseOutputs.has(v))) keepNew.push(v);
        }
      }
    }
    const statNames = Object.values(outs);
    const graph: Graph = {
      name: 'repair_step',
      nodes,
      inputs,
      outputs: [...statNames, ...keepNew].map((name) => ({ name })),
      initializers: inits,
      valueInfo: new Map(),
    };
    const model: Model = { ...P.model, graph, metadata: new Map(), functions: [...P.model.functions] };
    const runner = await createSession(model, this.opts.threads ? { threads: this.opts.threads } : {});
    // the session holds its own copy of the weights: lazy ones are read again if a later step needs them
    for (const t of inits.values()) releaseTensor(t);
    const stats: LayerStats = { count: 0 };
    const add = (key: keyof LayerStats, t: Tensor | undefined) => {
      if (!t || key === 'count') return;
      const src = t.data as Float32Array;
      const acc = (stats[key] as Float64Array | undefined) ?? new Float64Array(src.length);
      for (let i = 0; i < src.length; i++) acc[i]! += src[i]!;
      (stats as unknown as Record<string, Float64Array>)[key] = acc;
    };
    const newCache = new Map<string, Tensor[]>(keepNew.map((k) => [k, []]));
    try {
      for (let b = 0; b < this.batches.length; b++) {
        const feeds: Record<string, Tensor> = {};
        for (const vi of inputs) feeds[vi.name] = this.inputNames.has(vi.name) ? this.batches[b]![vi.name]! : feedsFrom.get(vi.name)![b]!;
        const res = await runner.run(feeds);
        stats.count += Number((res[outs['shape']!]!.data as BigInt64Array)[2]);
        for (const k of ['h', 'sp', 'hd', 'c', 'syd', 'qyd', 'syp', 'qyp'] as const) if (outs[k]) add(k, res[outs[k]!]);
        for (const k of keepNew) newCache.get(k)!.push(res[k]!);
      }
    } finally {
      await runner.release();
    }
    // update the cache: add new values, drop those nothing reads any more
    for (const [k, v] of newCache) {
      this.cache.set(k, v);
      for (const t of v) this.cacheBytes += (t.data as Float32Array).byteLength;
    }
    for (const [k, v] of this.cache) {
      if (!stillRead.has(k) && !laterDenseOutputs.has(k)) {
        this.cache.delete(k);
        for (const t of v) this.cacheBytes -= (t.data as Float32Array).byteLength;
      }
    }
    if (this.cacheBytes > (this.opts.memoryBudget ?? 2 ** 31)) this.reset();
    return stats;
  }

  /** Forgets every kept value: the next step recomputes from the input. */
  reset(): void {
    this.cache.clear();
    this.cacheBytes = 0;
    this.pruned.done.clear();
    this.dense?.done.clear();
  }

  get keptBytes(): number {
    return this.cacheBytes;
  }
}
