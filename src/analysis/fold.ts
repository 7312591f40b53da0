/**
 * Constant folding beyond the TS fold rules, for analysis (inspect) and pruning: MUTATES the model.
 * - Graph inputs pinned to values (`--input-value sr=16000`) become initializers of their names (simplify.ts
 *   pinInputValues);
 * - control flow whose path is then constant is inlined (an If on a constant condition: simplify.ts
 *   inlineBranches), which is how a shape- or sample-rate-conditional If disappears;
 * - every node whose inputs are all constant and that the TS rules (OpDef.fold, run by inferShapes) did not
 *   fold — an op without a fold rule such as Mod or ScatterND, or one whose rule declined — is computed by
 *   running the constant subgraph once in onnxruntime (runtime/session.ts; analysis sits above the runtime
 *   adapter in the layering), and its outputs become initializers (FoldResult.created: computed constants such
 *   as masks and pads, which never count as parameters). Nodes reading a parameter are not folded (a weight
 *   stays a weight). Outputs above FOLD_LIMIT elements are not
 *   materialised (nodes known to be that big are not even run); random ops (OpDef.nondeterministic), ops shears
 *   does not know, and nodes writing graph outputs are never folded.
 * Rounds repeat until nothing changes, since folding can make further nodes constant.
 */
import { nodeReads, removeDeadNodes, topoSort } from '../ir/edit.js';
import { cloneNode } from '../ir/clone.js';
import { emptyGraph, type Dim, type Model, type Node, type ValueInfo } from '../ir/graph.js';
import { numel, type Tensor } from '../ir/tensor.js';
import { staticProd } from '../ops/dims.js';
import { FOLD_LIMIT } from '../ops/fold.js';
import { opDef } from '../ops/registry.js';
import { runOnce } from '../runtime/session.js';
import { parameterTensors } from './cost.js';
import { inferShapes, type ShapeInfo } from './shapes.js';
import { inlineBranches, pinInputValues } from './simplify.js';

export interface FoldOptions {
  /** Shapes to analyse the inputs with (not written into the model). */
  inputShapes?: Record<string, Dim[]>;
  /** Input values to pin (see simplify.ts pinInputValues). */
  inputValues?: Record<string, number[]>;
  /** Run constant subgraphs in onnxruntime (default true); false: only pin and inline. */
  runtime?: boolean;
}

export interface FoldResult {
  /** Control-flow nodes replaced by their taken branch. */
  inlined: number;
  /** Values computed by onnxruntime and stored as initializers. */
  runtimeFolded: number;
  /** Their names: computed constants (masks, pads, anchor grids), never parameters (analyzeCost notParameters). */
  created: string[];
  /** Why onnxruntime could not fold a constant subgraph (the nodes stay as they are), when it could not. */
  runtimeFailure?: string;
}

const MAX_ROUNDS = 20;

export async function foldModel(model: Model, opts: FoldOptions = {}): Promise<FoldResult> {
  if (opts.inputValues && Object.keys(opts.inputValues).length) pinInputValues(model, opts.inputValues);
  const res: FoldResult = { inlined: 0, runtimeFolded: 0, created: [] };
  const shapeOpts = opts.inputShapes ? { inputShapes: opts.inputShapes } : {};
  for (let round = 0; round < MAX_ROUNDS; round++) {
    const info = inferShapes(model, shapeOpts);
    const b = inlineBranches(model, info);
    if (b) {
      res.inlined += b;
      removeDeadNodes(model.graph);
      continue;
    }
    if (opts.runtime === false) break;
    const r = await foldByRuntime(model, info, new Set(res.created));
    if (typeof r === 'string') {
      res.runtimeFailure = r;
      break;
    }
    if (r.length === 0) break;
    res.runtimeFolded += r.length;
    res.created.push(...r);
    removeDeadNodes(model.graph);
  }
  return res;
}

/**
 * The nodes to fold in onnxruntime: known, deterministic ops whose reads are all constant (folded by TS or by
 * earlier nodes of the set) and none a parameter (weights stay where they are, so the parameter count does not
 * change), with at least one output TS did not fold and no output known to exceed the cap.
 */
function constantClosure(model: Model, info: ShapeInfo, created: ReadonlySet<string>): Node[] {
  const g = model.graph;
  const params = new Set(parameterTensors(model, info).map((p) => p.name).filter((n) => !created.has(n)));
  const graphOutputs = new Set(g.outputs.map((o) => o.name));
  const produced = new Set<string>();
  const out: Node[] = [];
  for (const node of topoSort(g)) {
    const def = opDef(node);
    if (!def || def.nondeterministic) continue;
    const outs = node.outputs.filter((o) => o !== '');
    if (!outs.length || outs.every((o) => info.constants.has(o)) || outs.some((o) => graphOutputs.has(o))) continue;
    const reads = nodeReads(node);
    if (!reads.every((v) => info.constants.has(v) || produced.has(v)) || reads.some((v) => params.has(v))) continue;
    if (outs.some((o) => (staticProd(info.types.get(o)?.shape) ?? 0) > FOLD_LIMIT)) continue;
    out.push(node);
    for (const o of outs) produced.add(o);
  }
  return out;
}

/** Folds the constant closure in one onnxruntime run. Returns the names of the values folded, or why it could not. */
async function foldByRuntime(model: Model, info: ShapeInfo, created: ReadonlySet<string>): Promise<string[] | string> {
  const nodes = constantClosure(model, info, created);
  if (!nodes.length) return [];
  const g = model.graph;
  const sub = emptyGraph('constant_subgraph');
  sub.nodes = nodes.map(cloneNode);
  const produced = new Set(nodes.flatMap((n) => n.outputs).filter((o) => o));
  for (const n of nodes) {
    for (const v of nodeReads(n)) {
      if (produced.has(v) || sub.initializers.has(v)) continue;
      const c = info.constants.get(v);
      if (c) sub.initializers.set(v, c);
    }
  }
  sub.outputs = [...produced].map((name): ValueInfo => {
    const t = info.types.get(name);
    return t ? { name, type: { elemType: t.elemType } } : { name };
  });
  const m: Model = { ...model, graph: sub, metadata: new Map() };
  let values: Record<string, Tensor>;
  try {
    values = await runOnce(m, {}, { optimization: 'disabled' });
  } catch (e) {
    return (e as Error).message;
  }
  const folded: string[] = [];
  const available = new Set<string>();
  for (const [name, t] of Object.entries(values)) {
    if (numel(t.dims) > FOLD_LIMIT || Array.isArray(t.data)) continue;
    available.add(name);
  }
  const removed = new Set<Node>();
  for (const node of nodes) {
    const outs = node.outputs.filter((o) => o !== '');
    if (!outs.every((o) => available.has(o))) continue;
    for (const o of outs) g.initializers.set(o, values[o]!);
    removed.add(node);
    folded.push(...outs);
  }
  // A node that stays reads values whose producers may be gone: those are initializers now (all came back).
  g.nodes = g.nodes.filter((x) => !removed.has(x));
  return folded;
}
