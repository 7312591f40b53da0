/**
 * Coverage generated from the op registry: every rule an OpDef declares must have a check that exercises it.
 *
 * How it works. The per-op checks are data, in test/cases/: GRAD_CASES (run by finite differences in
 * grad_table.test.ts), EXACT_CASES (zeroed, pruned and compared in structured-exact.test.ts) and QUANT_CASES (QDQ
 * fusion and float16 checks in quant-fusion.test.ts). Test files run in separate processes, so instead of
 * recording what ran, this test imports the same tables and derives, without onnxruntime, what each case
 * exercises:
 * - gradient rules (OpDef.grad): the op types of the nodes on a gradient case's differentiated path (fed by a
 *   differentiated input, feeding the loss);
 * - channel rules (OpDef.channels): the op types of the nodes of an analysed exactness fixture with an input or
 *   output that loses a removed unit (chosenUnits, the units the exactness check zeroes and removes);
 * - quantization rules (OpDef.quant): the op types with a QDQ role (`kind`) in a 'qdq' fixture, and the nodes
 *   using castTo/keepFloat32 (fp16Rules) in an 'fp16' fixture.
 * Each set is compared with the registry: a rule without a covering case fails, unless it is in KNOWN_GAPS
 * with its reason; a gap that a case covers, or whose rule left the registry, fails as well, so the list cannot
 * silently grow or go stale. Adding a rule to the registry therefore means adding a case to a table.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { analyzeModel } from '../src/depgraph/analyze.js';
import { GraphBuilder } from '../src/ir/builder.js';
import type { Node } from '../src/ir/graph.js';
import { CONTRIB_OPS, OPS } from '../src/ops/registry.js';
import type { OpDef } from '../src/ops/types.js';
import { chosenUnits, EXACT_CASES } from './cases/exact-cases.js';
import { GRAD_CASES, type GradTableEntry } from './cases/grad-cases.js';
import { fp16Rules, QUANT_CASES } from './cases/quant-cases.js';

type Aspect = 'gradient' | 'channels' | 'qdq' | 'fp16';

/** Rules without a check, by aspect and op type, each with the reason it cannot (yet) have one. */
const KNOWN_GAPS: Record<Aspect, Record<string, string>> = {
  gradient: {},
  channels: {
    GroupNormalization: 'removing a channel changes its group\'s mean and variance: not exact by design (structured-exact.test.ts checks that it prunes to a valid model)',
    Identity: 'analyzeModel\'s simplify removes pass-through nodes before the dependency graph is built; a kept one (a graph output) is frozen',
    Dropout: 'as Identity: simplify removes inference Dropout before the dependency graph is built',
  },
  qdq: {
    GlobalMaxPool: 'onnxruntime 1.30 (CPU) neither fuses it nor drops its DQ/Q pair: DequantizeLinear -> float GlobalMaxPool -> QuantizeLinear stays (exact, not fused)',
    Upsample: 'QDQ needs opset >= 10 (>= 13 per channel) and onnxruntime rejects Upsample from opset 10: the role never applies',
  },
  fp16: {},
};

/** Every op definition by name: default-domain ops by type, onnxruntime contrib ops as `com.microsoft.Type`. */
const ALL_OPS: [string, OpDef][] = [
  ...Object.entries(OPS as Record<string, OpDef>),
  ...Object.entries(CONTRIB_OPS).map(([k, d]): [string, OpDef] => [`com.microsoft.${k}`, d]),
];

/** A node's op under the names of ALL_OPS. */
const opName = (n: Node): string => (n.domain ? `${n.domain}.${n.opType}` : n.opType);

/** Op types whose definition has the aspect's rule. */
function rulesOf(aspect: Aspect): Set<string> {
  const has: Record<Aspect, (d: OpDef) => boolean> = {
    gradient: (d) => d.grad !== undefined,
    channels: (d) => d.channels !== undefined,
    qdq: (d) => d.quant?.kind !== undefined,
    fp16: (d) => d.quant?.castTo !== undefined || (d.quant?.keepFloat32?.length ?? 0) > 0,
  };
  return new Set(ALL_OPS.filter(([, d]) => has[aspect](d)).map(([k]) => k));
}

/** Op types of the nodes on the path from the case's differentiated inputs to its output. */
function gradCovered(entries: GradTableEntry[]): Set<string> {
  const out = new Set<string>();
  for (const { case: c } of entries) {
    const b = new GraphBuilder('coverage');
    const names = Object.fromEntries(c.inputs.map((i) => [i.name, i.name]));
    const y = c.build(b, names);
    const nodes = b.graph.nodes;
    const fed = new Set(c.inputs.filter((i) => i.grad !== false).map((i) => i.name));
    for (const n of nodes) if (n.inputs.some((v) => fed.has(v))) n.outputs.forEach((v) => fed.add(v));
    const feeds = new Set([y]);
    for (const n of [...nodes].reverse()) if (n.outputs.some((v) => feeds.has(v))) n.inputs.forEach((v) => feeds.add(v));
    for (const n of nodes) if (n.inputs.some((v) => fed.has(v)) && n.outputs.some((v) => feeds.has(v))) out.add(opName(n));
  }
  return out;
}

/** Op types of the nodes that lose removed units in the exactness fixtures. */
function channelsCovered(): Set<string> {
  const out = new Set<string>();
  for (const c of EXACT_CASES) {
    const { dg, model } = analyzeModel(c.model());
    const chosen = chosenUnits(dg);
    const pruned = new Set<string>();
    for (const s of dg.spaces) {
      for (let j = 0; j < s.size; j++) {
        if (chosen.has(dg.elementUnit[s.offset + j]!)) {
          pruned.add(s.value);
          break;
        }
      }
    }
    for (const n of model.graph.nodes) if ([...n.inputs, ...n.outputs].some((v) => pruned.has(v))) out.add(opName(n));
  }
  return out;
}

function quantCovered(check: 'qdq' | 'fp16'): Set<string> {
  const uses = (n: Node) => (check === 'qdq' ? (OPS as Record<string, OpDef>)[n.opType]?.quant?.kind !== undefined : fp16Rules(n).castTo !== undefined || fp16Rules(n).keepFloat32.length > 0);
  return new Set(QUANT_CASES.filter((c) => c.check === check).flatMap((c) => c.model().graph.nodes.filter(uses).map((n) => n.opType)));
}

/** Rules without a check, gaps that a check covers, gaps whose rule is gone. */
function compare(aspect: Aspect, covered: Set<string>): { missing: string[]; closed: string[]; stale: string[] } {
  const rules = rulesOf(aspect);
  const gaps = KNOWN_GAPS[aspect];
  return {
    missing: [...rules].filter((k) => !covered.has(k) && !(k in gaps)).sort(),
    closed: Object.keys(gaps).filter((k) => covered.has(k)).sort(),
    stale: Object.keys(gaps).filter((k) => !rules.has(k)).sort(),
  };
}

function assertCovered(aspect: Aspect, covered: Set<string>, where: string): void {
  const r = compare(aspect, covered);
  assert.deepEqual(r.missing, [], `${aspect} rules without a check: add cases to ${where}`);
  assert.deepEqual(r.closed, [], `${aspect} gaps now covered: remove them from KNOWN_GAPS`);
  assert.deepEqual(r.stale, [], `${aspect} gaps for rules the registry no longer has: remove them from KNOWN_GAPS`);
}

test('every gradient rule has a finite-difference case (test/cases/grad-cases.ts)', () => {
  const rules = rulesOf('gradient');
  assert.ok(rules.size >= 50, `${rules.size} gradient rules`);
  assertCovered('gradient', gradCovered(GRAD_CASES), 'test/cases/grad-cases.ts');
});

test('the gradient enumeration notices a rule whose cases are taken away', () => {
  const withoutElu = GRAD_CASES.filter((e) => !e.name.startsWith('Elu'));
  assert.ok(withoutElu.length < GRAD_CASES.length);
  assert.deepEqual(compare('gradient', gradCovered(withoutElu)).missing, ['Elu']);
  // A node off the differentiated path (fed only by constants) covers nothing.
  const offPath: GradTableEntry = {
    name: 'off path',
    case: { inputs: [{ name: 'x', dims: [2] }, { name: 'k', dims: [2], grad: false }], build: (b, n) => b.node('Add', [n.x!, b.node('Elu', [n.k!])]) },
  };
  assert.deepEqual([...gradCovered([offPath])], ['Add']);
});

test('every channel rule has a zero-then-remove exactness fixture (test/cases/exact-cases.ts), or a listed reason', () => {
  const rules = rulesOf('channels');
  assert.ok(rules.size >= 100, `${rules.size} channel rules`);
  assertCovered('channels', channelsCovered(), 'test/cases/exact-cases.ts');
});

test('every QDQ role has a fusion fixture and every float16 rule an fp16 fixture (test/cases/quant-cases.ts), or a listed reason', () => {
  assert.ok(rulesOf('qdq').size >= 20, `${rulesOf('qdq').size} QDQ rules`);
  assert.ok(rulesOf('fp16').size >= 3, `${rulesOf('fp16').size} float16 rules`);
  assertCovered('qdq', quantCovered('qdq'), 'test/cases/quant-cases.ts (check: \'qdq\')');
  assertCovered('fp16', quantCovered('fp16'), 'test/cases/quant-cases.ts (check: \'fp16\')');
});
