/**
 * Graph simplification before analysis and pruning, so later passes see static shapes and constant
 * attributes. MUTATES the model in place (and returns it):
 * - writes the given input shapes into the graph inputs;
 * - replaces every value that folds to a constant (shape arithmetic, Constant nodes, Identity of a weight) by
 *   an initializer of the same name; an Identity of a shared weight thus becomes the consumer's own copy
 *   (layers keep separate parameters; the saved file may hold the bytes twice);
 * - rewrites symbolic shape inputs into constants that hold for every value of the symbols (OpDef.concretize:
 *   Reshape(x, Concat(Shape(x)[0], -1)) becomes Reshape(x, [0, -1]));
 * - drops pass-through nodes (Identity, inference Dropout) by rewiring, except where the output is a graph
 *   output (a Dropout there becomes an Identity so the output keeps its name);
 * - inlines control flow whose path is constant (OpDef.inline: an If whose condition folds, from input shapes
 *   or pinned input values): the taken branch's nodes and initializers join the enclosing graph (names renamed
 *   where they would clash), its outputs feed the If's outputs;
 * - removes dead nodes and unused initializers.
 * Graph input/output names and dtypes never change; shapes change only through `inputShapes`. value_info is
 * kept (entries of removed values go); use inferShapes for the types of the simplified graph.
 */
import { ShearsError } from '../errors.js';
import { cloneNode } from '../ir/clone.js';
import { outerScopeReads, removeDeadNodes, replaceAllUses, sortGraph, uniqueName, graphNames } from '../ir/edit.js';
import { subgraphs, type Dim, type Graph, type Model, type Node } from '../ir/graph.js';
import { numel, toNumbers, type Tensor } from '../ir/tensor.js';
import { makeTensor } from '../ops/fold.js';
import { fmtShape } from '../ops/dims.js';
import { opDef } from '../ops/registry.js';
import { inferShapes, nodeContext, type ShapeInfo } from './shapes.js';

export interface SimplifyOptions {
  /** Static (or partly static) shapes for graph inputs, by name; written into the model. */
  inputShapes?: Record<string, Dim[]>;
  /**
   * Values pinned for graph inputs (e.g. a sample rate): each becomes an initializer of the input's name (the
   * input stays declared, as a default value), so what depends only on it folds (pinInputValues).
   */
  inputValues?: Record<string, number[]>;
}

export interface SimplifyResult {
  /** The same model object, simplified. */
  model: Model;
  /** Values replaced by constants (folded outputs and concretized shape inputs). */
  folded: number;
  /** Nodes removed. */
  removed: number;
}

const MAX_ROUNDS = 20;

export function simplify(model: Model, opts: SimplifyOptions = {}): SimplifyResult {
  const g = model.graph;
  const before = g.nodes.length;
  if (opts.inputShapes) writeInputShapes(model, opts.inputShapes);
  if (opts.inputValues) pinInputValues(model, opts.inputValues);
  const initInputs = new Set(g.inputs.filter((i) => g.initializers.has(i.name)).map((i) => i.name));
  let folded = 0;
  for (let round = 0; round < MAX_ROUNDS; round++) {
    const info = inferShapes(model);
    const b = inlineBranches(model, info);
    if (b) {
      folded += b;
      continue;
    }
    const f = foldConstants(g, info);
    const c = concretize(model, info);
    const p = dropPassthrough(g);
    const d = removeDeadNodes(g);
    folded += f + c;
    if (f + c + p + d === 0) break;
  }
  // Initializers listed as graph inputs (old IR versions) that are gone leave no input behind.
  g.inputs = g.inputs.filter((i) => !initInputs.has(i.name) || g.initializers.has(i.name));
  sortGraph(g);
  return { model, folded, removed: before - g.nodes.length };
}

/** Validates and writes input shapes (null entries keep the declared dim). */
function writeInputShapes(model: Model, shapes: Record<string, Dim[]>): void {
  inferShapes(model, { inputShapes: shapes });
  for (const vi of model.graph.inputs) {
    const s = shapes[vi.name];
    if (!s) continue;
    if (!vi.type) throw new ShearsError(`input '${vi.name}' is not a tensor: cannot give it a shape`);
    const declared = vi.type.shape;
    vi.type = { elemType: vi.type.elemType, shape: s.map((d, i) => (d === null ? declared?.[i] ?? null : d)) };
  }
}

/** Replaces nodes whose outputs are all constant by initializers. Returns the number of values folded. */
function foldConstants(g: Graph, info: ShapeInfo): number {
  const outputs = new Set(g.outputs.map((o) => o.name));
  let n = 0;
  const keep: Node[] = [];
  for (const node of g.nodes) {
    const outs = node.outputs.filter((o) => o !== '');
    const foldable = outs.length > 0 && outs.every((o) => info.constants.has(o) && !outputs.has(o));
    if (!foldable) {
      keep.push(node);
      continue;
    }
    for (const o of outs) g.initializers.set(o, info.constants.get(o)!);
    n += outs.length;
  }
  g.nodes = keep;
  return n;
}

/** Applies OpDef.concretize: symbolic shape inputs become constants. Returns the number of inputs rewritten. */
function concretize(model: Model, info: ShapeInfo): number {
  const g = model.graph;
  let n = 0;
  for (const node of g.nodes) {
    const def = opDef(node);
    if (!def?.concretize) continue;
    const r = def.concretize(nodeContext(model, info, node));
    if (!r) continue;
    const current = node.inputs[r.input];
    const existing = current ? info.constants.get(current) : undefined;
    if (existing && sameValues(existing, r.tensor)) continue;
    const name = uniqueName(g, `${node.name || node.opType}_shape`);
    g.initializers.set(name, r.tensor);
    node.inputs[r.input] = name;
    n++;
  }
  return n;
}

function sameValues(a: Tensor, b: Tensor): boolean {
  const x = toNumbers(a);
  const y = toNumbers(b);
  return a.dtype === b.dtype && x.length === y.length && x.every((v, i) => v === y[i]);
}

/** Rewires around pass-through nodes. Returns the number of nodes removed or replaced. */
function dropPassthrough(g: Graph): number {
  const outputs = new Set(g.outputs.map((o) => o.name));
  const readers = new Set<string>();
  for (const node of g.nodes) for (const i of node.inputs) readers.add(i);
  let n = 0;
  for (const node of [...g.nodes]) {
    const def = opDef(node);
    if (!def?.passthrough || !isInferencePassthrough(g, node)) continue;
    const src = node.inputs[0];
    const dst = node.outputs[0];
    if (!src || !dst) continue;
    // Extra outputs (Dropout's mask) must be unused.
    if (node.outputs.slice(1).some((o) => o && (readers.has(o) || outputs.has(o)))) continue;
    if (outputs.has(dst)) {
      if (isPlainIdentity(node)) continue;
      node.opType = 'Identity';
      node.domain = '';
      node.inputs = [src];
      node.outputs = [dst];
      node.attrs = new Map();
      n++;
      continue;
    }
    g.nodes = g.nodes.filter((k) => k !== node);
    replaceAllUses(g, dst, src);
    n++;
  }
  return n;
}

/** The node simplify leaves at a graph output (the one it would emit there). */
function isPlainIdentity(node: Node): boolean {
  return node.opType === 'Identity' && node.domain === '' && node.inputs.length === 1 && node.outputs.length === 1;
}

/** A pass-through op stays pass-through unless a constant training_mode input turns it on. */
function isInferencePassthrough(g: Graph, node: Node): boolean {
  const mode = node.inputs[2];
  if (!mode) return true;
  const t = g.initializers.get(mode);
  return t !== undefined && toNumbers(t).every((v) => v === 0);
}

/**
 * Pins graph inputs to values: each becomes an initializer of the input's name (the input stays declared; an
 * initializer that shares an input's name is its default value), with the input's dtype and declared shape
 * (a scalar for rank 0, [n] for rank 1 with n values). Throws a ShearsError for an unknown input, a dtype shears
 * cannot build, or a value count that does not fit the declared shape.
 */
export function pinInputValues(model: Model, values: Record<string, number[]>): void {
  const g = model.graph;
  for (const [name, vals] of Object.entries(values)) {
    const vi = g.inputs.find((i) => i.name === name && !g.initializers.has(i.name));
    if (!vi) throw new ShearsError(`--input-value names '${name}', but the model's inputs are ${g.inputs.filter((i) => !g.initializers.has(i.name)).map((i) => `'${i.name}'`).join(', ')}`);
    if (!vi.type) throw new ShearsError(`input '${name}' is not a tensor: cannot pin its value`);
    const declared = vi.type.shape;
    let dims: number[];
    if (declared === undefined) dims = vals.length === 1 ? [] : [vals.length];
    else if (declared.length === 0) dims = [];
    else if (declared.length === 1) dims = [vals.length];
    else if (declared.every((d) => typeof d === 'number')) dims = declared as number[];
    else throw new ShearsError(`input '${name}' has shape ${fmtShape(declared)}: give it a static shape to pin its value`);
    if (numel(dims) !== vals.length || (declared?.length === 1 && typeof declared[0] === 'number' && declared[0] !== vals.length)) {
      throw new ShearsError(`input '${name}' has shape ${fmtShape(declared ?? [])}, --input-value gives ${vals.length} value(s)`);
    }
    const t = makeTensor(vi.type.elemType, dims, vals);
    if (!t) throw new ShearsError(`input '${name}': cannot pin a value of its element type`);
    g.initializers.set(name, t);
  }
}

/** Inlines the subgraph of every node whose path is constant (OpDef.inline). Returns the number of nodes inlined. */
export function inlineBranches(model: Model, info: ShapeInfo): number {
  const g = model.graph;
  let n = 0;
  for (const node of [...g.nodes]) {
    const def = opDef(node);
    if (!def?.inline) continue;
    const attr = def.inline(nodeContext(model, info, node));
    const a = attr ? node.attrs.get(attr) : undefined;
    if (a?.kind !== 'graph') continue;
    if (inlineGraph(g, node, a.value)) n++;
  }
  return n;
}

/**
 * Replaces `node` by the nodes of `branch` (copies; the branch is shared with model copies and never edited),
 * its initializers and Identity nodes from the branch outputs to the node's outputs. Branch-local names that
 * clash with names of the enclosing graph are renamed; a clash read by a nested subgraph leaves the node as it
 * is (returns false).
 */
function inlineGraph(g: Graph, node: Node, branch: Graph): boolean {
  if (branch.inputs.length) return false;
  const locals = new Set<string>([...branch.initializers.keys()]);
  for (const m of branch.nodes) for (const o of m.outputs) if (o) locals.add(o);
  const used = graphNames(g);
  const rename = new Map<string, string>();
  for (const l of locals) {
    if (!used.has(l)) {
      used.add(l);
      continue;
    }
    let k = 1;
    while (used.has(`${l}_${k}`) || locals.has(`${l}_${k}`)) k++;
    rename.set(l, `${l}_${k}`);
    used.add(`${l}_${k}`);
  }
  const nested = new Set<string>();
  for (const m of branch.nodes) for (const sg of subgraphs(m)) for (const r of outerScopeReads(sg)) nested.add(r);
  if ([...rename.keys()].some((r) => nested.has(r))) return false;
  const to = (v: string) => rename.get(v) ?? v;
  const prefix = node.name || node.opType;
  const nodes: Node[] = branch.nodes.map((m) => {
    const c = cloneNode(m);
    c.inputs = c.inputs.map((v) => (v ? to(v) : v));
    c.outputs = c.outputs.map((v) => (v ? to(v) : v));
    c.name = m.name ? uniqueNodeName(used, `${prefix}/${m.name}`) : m.name;
    return c;
  });
  for (const [k, t] of branch.initializers) g.initializers.set(to(k), t);
  node.outputs.forEach((o, i) => {
    const src = branch.outputs[i]?.name;
    if (!o || !src) return;
    nodes.push({ name: uniqueNodeName(used, `${prefix}/output_${i}`), opType: 'Identity', domain: '', inputs: [to(src)], outputs: [o], attrs: new Map() });
  });
  const at = g.nodes.indexOf(node);
  g.nodes.splice(at, 1, ...nodes);
  return true;
}

function uniqueNodeName(used: Set<string>, base: string): string {
  let name = base;
  for (let k = 1; used.has(name); k++) name = `${base}_${k}`;
  used.add(name);
  return name;
}
