/**
 * Recurrent layers: RNN, GRU, LSTM (ONNX semantics: direction forward/reverse/bidirectional, layout 0/1 from
 * opset 14, hidden_size, optional B, sequence_lens, initial_h, initial_c, peepholes P).
 *
 * Tensors, with G gates (RNN 1, GRU 3 in the order z r h, LSTM 4 in the order i o f c), D directions and H
 * hidden units: W [D, G*H, I], R [D, G*H, H], B [D, 2*G*H] (Wb then Rb), P [D, 3*H] (LSTM), initial_h/c [D, B, H]
 * (layout 1: [B, D, H]); outputs Y [T, D, B, H] (layout 1: [B, T, D, H]), Y_h and Y_c like initial_h.
 *
 * Cost: every time step of every direction multiplies the input and the hidden state by each gate's block:
 * MACs = T * D * batch * G * H * (I + H). Other FLOPs (bias adds, gate activations, state updates) are counted
 * as an approximate per-unit constant per step.
 *
 * Structured pruning removes hidden units: unit j is row j of every gate block of W, R and B (both halves) and P,
 * column j of R, index j of initial_h/initial_c and of the hidden axis of Y, Y_h, Y_c. With the default
 * activations a unit whose W/R/B/P rows and initial states are zero keeps h_j = 0 at every step (RNN:
 * tanh(0) = 0; GRU: h~ = tanh(0) = 0, so h_t = z*h_{t-1} stays 0; LSTM: the cell input g = tanh(0) = 0, so
 * c_t = f*c_{t-1} stays 0 and h = o*tanh(c) = 0), which makes removal exact. Input features (axis 2 of W) are
 * tied to the feature axis of X, so the layer before can lose channels too.
 */
import { attrInt, attrString, type Dim, type Node, type TensorType } from '../ir/graph.js';
import { opError, present } from './args.js';
import { ZERO_COST } from './cost.js';
import { fmtShape, isNum, staticProd } from './dims.js';
import { checkDim, shapeOf, tt } from './shape-rules.js';
import type { AxisRef, ChannelLink, ChannelRule, CostContext, InferContext, LayerOpDef, PruneRule, WeightSpec } from './types.js';

interface Family {
  /** Gate blocks in W and R. */
  gates: number;
  /** Approximate non-MAC flops per hidden unit per step (bias adds, activations, state update). */
  flops: number;
  /** Whether the op has a cell state (initial_c, Y_c) and peepholes. */
  cell: boolean;
}

const FAMILY: Record<'RNN' | 'GRU' | 'LSTM', Family> = {
  RNN: { gates: 1, flops: 3, cell: false },
  GRU: { gates: 3, flops: 14, cell: false },
  LSTM: { gates: 4, flops: 16, cell: true },
};

const familyOf = (node: Node): Family => FAMILY[node.opType as keyof typeof FAMILY];

/** Input positions. */
const X = 0, W = 1, R = 2, B = 3, INIT_H = 5, INIT_C = 6, P = 7;

function directions(ctx: { readonly node: Node }): number {
  const d = attrString(ctx.node, 'direction', 'forward');
  if (d === 'forward' || d === 'reverse') return 1;
  if (d === 'bidirectional') return 2;
  return opError(ctx, `direction '${d}' is not forward, reverse or bidirectional`);
}

function layoutOf(ctx: { readonly node: Node; readonly opset: number }): 0 | 1 {
  const l = ctx.opset >= 14 ? attrInt(ctx.node, 'layout', 0) : 0;
  if (l !== 0 && l !== 1) opError(ctx, `layout ${l} is not 0 or 1`);
  return l as 0 | 1;
}

interface Dims {
  seq: Dim;
  batch: Dim;
  input: Dim;
  hidden: Dim;
  dirs: number;
  layout: 0 | 1;
  fam: Family;
}

/** Sizes of a recurrent node, checking every given tensor against them. Undefined when X's shape is unknown. */
function rnnDims(ctx: InferContext): Dims | undefined {
  const fam = familyOf(ctx.node);
  const dirs = directions(ctx);
  const layout = layoutOf(ctx);
  const x = shapeOf(ctx, X);
  const w = shapeOf(ctx, W), r = shapeOf(ctx, R);
  const attrH = attrInt(ctx.node, 'hidden_size');
  let hidden: Dim = attrH ?? r?.[2] ?? null;
  if (w && w.length !== 3) opError(ctx, `W must be 3-D [num_directions, ${fam.gates}*hidden_size, input_size], got ${fmtShape(w)}`);
  if (r && r.length !== 3) opError(ctx, `R must be 3-D [num_directions, ${fam.gates}*hidden_size, hidden_size], got ${fmtShape(r)}`);
  if (r) {
    checkDim(ctx, r[2], hidden, 'hidden size of R differs from hidden_size');
    if (!isNum(hidden)) hidden = r[2]!;
  }
  const gh: Dim = isNum(hidden) ? fam.gates * hidden : null;
  for (const [name, s] of [['W', w], ['R', r]] as const) {
    if (!s) continue;
    checkDim(ctx, s[0], dirs, `${name} ${fmtShape(s)}: num_directions differs from the direction attribute`);
    checkDim(ctx, s[1], gh, `${name} ${fmtShape(s)}: gate rows differ from ${fam.gates} x hidden_size`);
  }
  const b = present(ctx, B) ? shapeOf(ctx, B) : undefined;
  if (b) {
    if (b.length !== 2) opError(ctx, `B must be 2-D [num_directions, ${2 * fam.gates}*hidden_size], got ${fmtShape(b)}`);
    checkDim(ctx, b[0], dirs, `B ${fmtShape(b)}: num_directions differs from the direction attribute`);
    checkDim(ctx, b[1], isNum(gh) ? 2 * gh : null, `B ${fmtShape(b)}: size differs from ${2 * fam.gates} x hidden_size`);
  }
  const p = fam.cell && present(ctx, P) ? shapeOf(ctx, P) : undefined;
  if (p) {
    if (p.length !== 2) opError(ctx, `P must be 2-D [num_directions, 3*hidden_size], got ${fmtShape(p)}`);
    checkDim(ctx, p[0], dirs, `P ${fmtShape(p)}: num_directions differs from the direction attribute`);
    checkDim(ctx, p[1], isNum(hidden) ? 3 * hidden : null, `P ${fmtShape(p)}: size differs from 3 x hidden_size`);
  }
  if (!x) return undefined;
  if (x.length !== 3) opError(ctx, `X must be 3-D (${layout ? '[batch, seq, input]' : '[seq, batch, input]'}), got ${fmtShape(x)}`);
  const [seq, batch] = layout ? [x[1]!, x[0]!] : [x[0]!, x[1]!];
  if (w) checkDim(ctx, w[2], x[2], `input size of W ${fmtShape(w)} differs from X ${fmtShape(x)}`);
  const seqLens = present(ctx, 4) ? shapeOf(ctx, 4) : undefined;
  if (seqLens) {
    if (seqLens.length !== 1) opError(ctx, `sequence_lens must be 1-D [batch], got ${fmtShape(seqLens)}`);
    checkDim(ctx, seqLens[0], batch, 'sequence_lens differs from the batch size');
  }
  for (const i of fam.cell ? [INIT_H, INIT_C] : [INIT_H]) {
    const s = present(ctx, i) ? shapeOf(ctx, i) : undefined;
    if (!s) continue;
    const name = i === INIT_H ? 'initial_h' : 'initial_c';
    const want = layout ? [batch, dirs, hidden] : [dirs, batch, hidden];
    if (s.length !== 3) opError(ctx, `${name} must be 3-D, got ${fmtShape(s)}`);
    s.forEach((d, a) => checkDim(ctx, d, want[a], `${name} ${fmtShape(s)} differs from ${fmtShape(want)}`));
  }
  return { seq, batch, input: x[2]!, hidden, dirs, layout, fam };
}

function inferRecurrent(ctx: InferContext): (TensorType | undefined)[] {
  const elem = ctx.input(X)?.elemType ?? ctx.input(W)?.elemType;
  const fam = familyOf(ctx.node);
  const n = fam.cell ? 3 : 2;
  const d = rnnDims(ctx);
  if (elem === undefined) return Array.from({ length: n }, () => undefined);
  if (!d) return Array.from({ length: n }, () => tt(elem));
  const y = d.layout ? [d.batch, d.seq, d.dirs, d.hidden] : [d.seq, d.dirs, d.batch, d.hidden];
  const yh = d.layout ? [d.batch, d.dirs, d.hidden] : [d.dirs, d.batch, d.hidden];
  return fam.cell ? [tt(elem, y), tt(elem, yh), tt(elem, yh)] : [tt(elem, y), tt(elem, yh)];
}

/**
 * From the shapes of X and R alone (not hidden_size, so that the structured planner can price resized tensors
 * before the attribute follows).
 */
function recurrentCost(ctx: CostContext) {
  const fam = familyOf(ctx.node);
  const x = shapeOf(ctx, X), r = shapeOf(ctx, R);
  if (!x || !r || x.length !== 3 || r.length !== 3) return ZERO_COST;
  const [seq, batch] = layoutOf(ctx) ? [x[1]!, x[0]!] : [x[0]!, x[1]!];
  const steps = staticProd([seq, batch, r[2]!, directions(ctx)]);
  const input = x[2], hidden = r[2];
  if (steps === undefined || !isNum(input) || !isNum(hidden)) return ZERO_COST;
  const peep = fam.cell && present(ctx, P) ? 6 : 0;
  return { macs: steps * fam.gates * (input + hidden), flops: steps * (fam.flops + peep) };
}

/** W as the layer weight: its gate rows are outputs, its input axis is reduced. R is the second weight. */
function recurrentWeight(_node: Node, dims?: readonly number[]): WeightSpec | undefined {
  return dims !== undefined && dims.length !== 3 ? undefined : { input: W, outAxis: 1, inAxis: 2 };
}

function recurrentWeights(_node: Node): WeightSpec[] {
  return [{ input: W, outAxis: 1, inAxis: 2 }, { input: R, outAxis: 1, inAxis: 2 }];
}

// ------------------------------------------------------------------------------------------ structured

const IN = (index: number, axis: number): AxisRef => ({ io: 'in', index, axis });
const OUT = (index: number, axis: number): AxisRef => ({ io: 'out', index, axis });

function blockMap(size: number, hidden: number): Int32Array {
  const m = new Int32Array(size);
  for (let r = 0; r < size; r++) m[r] = r % hidden;
  return m;
}

/**
 * Hidden unit j: R's column j (the hidden state read) is the anchor; rows j + k*H of W, R, B and P, index j of
 * the initial states and of every output's hidden axis are tied to it. X's feature axis is tied to W's input axis.
 */
export const recurrentChannels: ChannelRule = (ctx) => {
  const fam = familyOf(ctx.node);
  const r = ctx.inShape(R), w = ctx.inShape(W);
  if (!r || !w || r.length !== 3 || w.length !== 3) return 'W or R shape unknown';
  const H = r[2]!;
  if (H < 0) return 'hidden size unknown';
  const anchor = IN(R, 2);
  // The first present output carries the roles ('writes': gate rows produce the unit, 'reads': R consumes it).
  const outs: AxisRef[] = [];
  if (ctx.node.outputs[0]) outs.push(OUT(0, 3));
  for (let o = 1; o < (fam.cell ? 3 : 2); o++) if (ctx.node.outputs[o]) outs.push(OUT(o, 2));
  const head = outs[0] ?? anchor;
  const links: ChannelLink[] = [
    { a: IN(X, 2), b: IN(W, 2), role: 'reads' },
    { a: head, b: IN(W, 1), map: blockMap(w[1]!, H), role: 'writes' },
    { a: head, b: IN(R, 1), map: blockMap(r[1]!, H), role: 'writes' },
  ];
  for (const o of outs) links.push({ a: anchor, b: o, role: 'reads' });
  const b = present(ctx, B) ? ctx.inShape(B) : undefined;
  if (present(ctx, B)) {
    if (!b) return 'B shape unknown';
    links.push({ a: head, b: IN(B, 1), map: blockMap(b[1]!, H), role: 'writes' });
  }
  if (fam.cell && present(ctx, P)) {
    const p = ctx.inShape(P);
    if (!p) return 'P shape unknown';
    links.push({ a: head, b: IN(P, 1), map: blockMap(p[1]!, H), role: 'writes' });
  }
  for (const i of fam.cell ? [INIT_H, INIT_C] : [INIT_H]) if (present(ctx, i)) links.push({ a: anchor, b: IN(i, 2) });
  return { links };
};

/** hidden_size follows the kept units. */
export const recurrentPrune: PruneRule = (ctx) => {
  const kept = ctx.kept('in', R, 2);
  if (kept) ctx.node.attrs.set('hidden_size', { kind: 'int', value: kept.length });
};

const recurrent: LayerOpDef & { weights: typeof recurrentWeights } = {
  infer: inferRecurrent,
  cost: recurrentCost,
  // W, R, B, P; not sequence_lens nor the initial states.
  paramInputs: [W, R, B, P],
  weight: recurrentWeight,
  weights: recurrentWeights,
  channels: recurrentChannels,
  prune: recurrentPrune,
  noGrad: 'fine-tuning and training are not supported for recurrent models (RNN, GRU, LSTM): prune without fine-tuning (unstructured or structured)',
};

export const RECURRENT_OPS = {
  RNN: recurrent,
  GRU: recurrent,
  LSTM: recurrent,
} satisfies Record<string, LayerOpDef>;
