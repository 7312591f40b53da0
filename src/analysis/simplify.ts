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
 * - removes dead nodes and unused initializers.
 * Graph input/output names and dtypes never change; shapes change only through `inputShapes`. value_info is
 * kept (entries of removed values go); use inferShapes for the types of the simplified graph.
 */
import { ShearsError } from '../errors.js';
import { removeDeadNodes, replaceAllUses, sortGraph, uniqueName } from '../ir/edit.js';
import type { Dim, Graph, Model, Node } from '../ir/graph.js';
import { toNumbers, type Tensor } from '../ir/tensor.js';
import { opDef } from '../ops/registry.js';
import { inferShapes, nodeContext, type ShapeInfo } from './shapes.js';

export interface SimplifyOptions {
  /** Static (or partly static) shapes for graph inputs, by name; written into the model. */
  inputShapes?: Record<string, Dim[]>;
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
  const initInputs = new Set(g.inputs.filter((i) => g.initializers.has(i.name)).map((i) => i.name));
  let folded = 0;
  for (let round = 0; round < MAX_ROUNDS; round++) {
    const info = inferShapes(model);
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
