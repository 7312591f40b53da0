/**
 * Shape and dtype inference over the whole graph, with constant folding of shape arithmetic. Per-op rules live
 * in ops/ (OpDef.infer / fold / symbolic); this pass walks the graph in topological order and keeps the maps.
 *
 * Dims are numbers, symbols or (inside op rules only) null. Every unknown dim that reaches the result gets a
 * fresh symbol `unk__<k>`, so two dims with the same symbol are known to be equal and shape subgraphs that
 * copy a dim (Shape -> Gather -> Concat -> Reshape) can be followed symbolically.
 * Initializers count as constants even when they are also listed as graph inputs (old IR versions).
 * Subgraphs (If branches, Loop/Scan bodies) are inferred too, before their node, with the enclosing scopes'
 * values visible; their values share the maps of the main graph (ONNX names are unique across scopes).
 */
import { ShearsError } from '../errors.js';
import { DataType, isIntegerType } from '../ir/dtype.js';
import { topoSort } from '../ir/edit.js';
import { opsetVersion, subgraphs, type Attr, type Dim, type Graph, type Model, type Node, type TensorType } from '../ir/graph.js';
import { numel, toNumbers, type Tensor } from '../ir/tensor.js';
import { opDef } from '../ops/registry.js';
import type { CostContext, InferContext, OpDef } from '../ops/types.js';
import { fmtShape, isStatic, staticProd } from '../ops/dims.js';
import { FOLD_LIMIT, makeTensor } from '../ops/fold.js';

export interface ShapeInfo {
  /** Type of every value: graph inputs, initializers, node outputs (absent where unknown). */
  types: Map<string, TensorType>;
  /** Initializers plus every value that folds to a constant. */
  constants: Map<string, Tensor>;
  /**
   * Element values of small integer tensors (shapes, axes), numbers where fixed and symbols where they copy a
   * symbolic dim: e.g. Shape(x) of x: [N,64,1,1] has the value [N,64,1,1] without being constant.
   */
  values: Map<string, Dim[]>;
  /** Nodes whose op shears does not know (their outputs keep only declared value_info types). */
  unknownOps: { node: string; opType: string }[];
}

export interface ShapeOptions {
  /** Shapes for graph inputs (by name): fix symbolic/unknown dims; fixed dims must agree. */
  inputShapes?: Record<string, Dim[]>;
}

/** Integer values with at most this many elements are tracked element by element. */
const VALUE_LIMIT = 64;

/** Element types tracked as values: integers, and booleans (comparisons of shape values, as 0/1). */
function isValueType(dtype: number): boolean {
  return isIntegerType(dtype) || dtype === DataType.BOOL;
}

class Inference {
  private unk = 0;
  /** The graph whose nodes are being inferred (the main graph or a subgraph). */
  private scope: Graph;
  /** What each subgraph's outputs were inferred as, taken when it was done (sibling branches may reuse names). */
  private readonly subOutputs = new Map<Graph, { type?: TensorType; constant?: Tensor }[]>();
  constructor(
    readonly model: Model,
    readonly info: ShapeInfo = { types: new Map(), constants: new Map(), values: new Map(), unknownOps: [] },
  ) {
    this.scope = model.graph;
  }

  /** Replaces unknown (null) dims by fresh symbols. */
  name(t: TensorType): TensorType {
    if (!t.shape || !t.shape.includes(null)) return t;
    return { elemType: t.elemType, shape: t.shape.map((d) => (d === null ? `unk__${this.unk++}` : d)) };
  }

  value(name: string | undefined): Dim[] | undefined {
    if (!name) return undefined;
    const v = this.info.values.get(name);
    if (v) return v;
    const c = this.info.constants.get(name);
    if (c && isValueType(c.dtype) && !Array.isArray(c.data) && numel(c.dims) <= VALUE_LIMIT) {
      const nums = toNumbers(c);
      this.info.values.set(name, nums);
      return nums;
    }
    return undefined;
  }

  context(node: Node): CostContext {
    const { types, constants } = this.info;
    const at = (i: number) => node.inputs[i] || undefined;
    return {
      node,
      opset: opsetVersion(this.model, node.domain),
      inputCount: node.inputs.length,
      input: (i) => {
        const n = at(i);
        return n === undefined ? undefined : types.get(n);
      },
      constant: (i) => {
        const n = at(i);
        return n === undefined ? undefined : constants.get(n);
      },
      value: (i) => this.value(at(i)),
      subgraphOutput: (attr, i) => {
        const a: Attr | undefined = node.attrs.get(attr);
        return a?.kind === 'graph' ? this.subOutputs.get(a.value)?.[i] : undefined;
      },
      output: (i) => {
        const n = node.outputs[i];
        return n ? types.get(n) : undefined;
      },
    };
  }

  declared(name: string): TensorType | undefined {
    const g = this.scope;
    return g.valueInfo.get(name)?.type ?? g.outputs.find((o) => o.name === name)?.type;
  }

  inputs(opts: ShapeOptions): void {
    const g = this.model.graph;
    const given = opts.inputShapes ?? {};
    for (const name of Object.keys(given)) {
      if (!g.inputs.some((i) => i.name === name)) {
        throw new ShearsError(`--input-shape names '${name}', but the model's inputs are ${g.inputs.map((i) => `'${i.name}'`).join(', ')}`);
      }
    }
    for (const [name, t] of g.initializers) {
      this.info.types.set(name, { elemType: t.dtype, shape: [...t.dims] });
      this.info.constants.set(name, t);
    }
    for (const vi of g.inputs) {
      if (g.initializers.has(vi.name) && given[vi.name] === undefined) continue;
      if (!vi.type) continue;
      const shape = given[vi.name];
      this.info.types.set(vi.name, this.name(shape ? withGivenShape(vi.name, vi.type, shape) : vi.type));
    }
  }

  /** Infers a subgraph's values in place (its initializers and inputs first), with this scope's values visible. */
  subgraph(g: Graph): void {
    const outer = this.scope;
    this.scope = g;
    try {
      for (const [name, t] of g.initializers) {
        this.info.types.set(name, { elemType: t.dtype, shape: [...t.dims] });
        this.info.constants.set(name, t);
      }
      for (const vi of g.inputs) if (vi.type && !g.initializers.has(vi.name)) this.info.types.set(vi.name, this.name(vi.type));
      for (const n of topoSort(g)) {
        try {
          this.node(n);
        } catch (e) {
          // A branch that cannot take these shapes (the branch not taken for them): its values stay unknown.
          if (!(e instanceof ShearsError)) throw e;
        }
      }
      this.subOutputs.set(g, g.outputs.map((o) => {
        const type = this.info.types.get(o.name);
        const constant = this.info.constants.get(o.name);
        return { ...(type ? { type } : {}), ...(constant ? { constant } : {}) };
      }));
    } finally {
      this.scope = outer;
    }
  }

  node(node: Node): void {
    for (const sg of subgraphs(node)) this.subgraph(sg);
    const def = opDef(node);
    if (!def) {
      this.info.unknownOps.push({ node: node.name, opType: node.domain ? `${node.domain}.${node.opType}` : node.opType });
      for (const o of node.outputs) {
        const t = o ? this.declared(o) : undefined;
        if (t) this.info.types.set(o, this.name(t));
      }
      return;
    }
    const ctx = this.context(node);
    const outs = runRule(node, () => def.infer(ctx));
    node.outputs.forEach((o, i) => {
      const t = outs[i] ?? (o ? this.declared(o) : undefined);
      if (o && t) this.info.types.set(o, this.name(t));
    });
    this.fold(node, def, ctx);
    this.symbolic(node, def, ctx);
  }

  fold(node: Node, def: OpDef, ctx: InferContext): void {
    if (!def.fold) return;
    if (!def.foldCopies) {
      for (const o of node.outputs) {
        const n = o ? staticProd(this.info.types.get(o)?.shape) : undefined;
        if (n !== undefined && n > FOLD_LIMIT) return;
      }
    }
    const inputs = node.inputs.map((_, i) => ctx.constant(i));
    let res: Tensor[] | undefined;
    try {
      res = def.fold(ctx, inputs);
    } catch {
      res = undefined; // folding is an optimisation: infer already reported real problems
    }
    if (!res) return;
    res.forEach((t, i) => {
      const o = node.outputs[i];
      if (!o) return;
      this.info.constants.set(o, t);
      this.info.types.set(o, { elemType: t.dtype, shape: [...t.dims] });
    });
  }

  symbolic(node: Node, def: OpDef, ctx: InferContext): void {
    let vals: (Dim[] | undefined)[] | undefined;
    if (def.symbolic && node.outputs.some((o) => o && !this.info.constants.has(o))) {
      try {
        vals = def.symbolic(ctx);
      } catch {
        vals = undefined;
      }
    }
    node.outputs.forEach((o, i) => {
      if (!o || this.info.constants.has(o)) return;
      const v = vals?.[i];
      if (!v || v.length > VALUE_LIMIT) return;
      this.info.values.set(o, v);
      // A value known in every element is a constant (e.g. Shape(x)[1] with x: [N,64,...]).
      const t = this.info.types.get(o);
      if (t && isValueType(t.elemType) && isStatic(t.shape) && numel(t.shape) === v.length && v.every((d) => typeof d === 'number')) {
        const c = makeTensor(t.elemType, t.shape, v as number[]);
        if (c) this.info.constants.set(o, c);
      }
    });
  }
}

/** Runs an op rule, turning plain errors (bad attributes) into ShearsErrors that name the node. */
function runRule<T>(node: Node, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof ShearsError) throw e;
    if (e instanceof Error && e.constructor === Error) {
      throw new ShearsError(`${node.opType}: ${e.message}`, { node: node.name || node.opType, cause: e });
    }
    throw e;
  }
}

function withGivenShape(name: string, t: TensorType, shape: Dim[]): TensorType {
  for (const s of shape) {
    if (typeof s === 'number' && (!Number.isInteger(s) || s < 0)) throw new ShearsError(`input '${name}': bad dimension ${s} in ${fmtShape(shape)}`);
  }
  const declared = t.shape;
  if (declared) {
    if (declared.length !== shape.length) {
      throw new ShearsError(`input '${name}' has rank ${declared.length} (${fmtShape(declared)}), the given shape ${fmtShape(shape)} has rank ${shape.length}`);
    }
    declared.forEach((d, i) => {
      const s = shape[i];
      if (typeof d === 'number' && typeof s === 'number' && d !== s) {
        throw new ShearsError(`input '${name}' has size ${d} on axis ${i}, the given shape ${fmtShape(shape)} has ${s}`);
      }
    });
  }
  return { elemType: t.elemType, shape: shape.map((s, i) => (s === null ? declared?.[i] ?? null : s)) };
}

/**
 * Infers the type of every value of the model's main graph. Throws a ShearsError naming the node when a node's
 * inputs cannot fit its op, or naming the input when `inputShapes` contradicts the model. Unknown ops do not
 * throw: they are listed in `unknownOps` and their outputs keep declared value_info types (or none).
 */
export function inferShapes(model: Model, opts: ShapeOptions = {}): ShapeInfo {
  const inf = new Inference(model);
  inf.inputs(opts);
  for (const node of topoSort(model.graph)) inf.node(node);
  return inf.info;
}

/** The context op rules see for a node, over the results of inferShapes (for cost and other per-op queries). */
export function nodeContext(model: Model, info: ShapeInfo, node: Node): CostContext {
  return new Inference(model, info).context(node);
}
