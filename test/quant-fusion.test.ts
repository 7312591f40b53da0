/**
 * Runs the registry's quantization table (test/cases/quant-cases.ts). A 'qdq' fixture, quantized to int8 QDQ,
 * must be run by onnxruntime as integer kernels: Q/DQ only at the model boundary (so every 'move' op runs on the
 * quantized values), no float node left of an op whose rule is 'compute' or 'clamp', and the output close to the
 * float model's. An 'fp16' fixture must load and run after float16 conversion and stay close, with float Cast
 * targets (castTo) turned float16 and every keepFloat32 input still float32. What each check asserts is read
 * from the op registry, node by node; test/registry-coverage.test.ts checks that the table reaches every rule.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/graph.js';
import { opDef } from '../src/ops/registry.js';
import { convertFp16, optimizedOpTypes, quantizeStatic } from '../src/quant/index.js';
import { runOnce } from '../src/runtime/session.js';
import { fp16Rules, QUANT_CASES, type QuantCase } from './cases/quant-cases.js';
import { calibFeeds, randTensor } from './quant-fixture.js';

/**
 * The output on the first calibration batch (calibFeeds' seed), without graph optimisations: QDQ then means
 * float math on fake-quantized values, whatever integer kernels this CPU has (onnxruntime's u8s8 kernels
 * saturate on x86 CPUs without VNNI, which the fusion check does not depend on).
 */
async function output(m: Model, c: QuantCase): Promise<Float32Array> {
  const out = await runOnce(m, { x: randTensor(c.inShape, 100) }, { threads: 1, optimization: 'disabled' });
  return out['y']!.data as Float32Array;
}

function relMse(a: Float32Array, b: Float32Array): number {
  assert.equal(b.length, a.length);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += a[i]! ** 2;
  }
  return num / den;
}

async function checkQdq(c: QuantCase): Promise<void> {
  const m = c.model();
  const { model: q, report } = await quantizeStatic(m, calibFeeds(c.inShape));
  assert.deepEqual(report.excluded, []);
  const fused = await optimizedOpTypes(q);
  assert.equal(fused.qdqNodes, 2, `Q/DQ only at the input and the output: ${JSON.stringify(fused.opTypes)}`);
  for (const n of m.graph.nodes) {
    const kind = opDef(n)?.quant?.kind;
    if (kind === 'compute' || kind === 'clamp') assert.equal(fused.opTypes[n.opType], undefined, `float ${n.opType} left (${kind}): ${JSON.stringify(fused.opTypes)}`);
  }
  const e = relMse(await output(m, c), await output(q, c));
  assert.ok(e < 1e-3, `relative MSE ${e}`);
}

async function checkFp16(c: QuantCase): Promise<void> {
  const m = c.model();
  const { model: h } = convertFp16(m);
  const byName = new Map(h.graph.nodes.map((n) => [n.name, n]));
  const producer = new Map(h.graph.nodes.flatMap((n) => n.outputs.map((o) => [o, n] as const)));
  let checked = 0;
  for (const n of m.graph.nodes) {
    const rules = fp16Rules(n);
    const after = byName.get(n.name)!;
    if (rules.castTo) {
      assert.equal(after.attrs.get(rules.castTo)!.value, DataType.FLOAT16, `${n.name} casts to float16`);
      checked++;
    }
    for (const i of rules.keepFloat32) {
      const v = after.inputs[i]!;
      const init = h.graph.initializers.get(v);
      const p = producer.get(v);
      assert.ok(init ? init.dtype === DataType.FLOAT : p?.opType === 'Cast' && p.attrs.get('to')!.value === DataType.FLOAT, `${n.name} input ${i} stays float32`);
      checked++;
    }
  }
  assert.ok(checked > 0, 'the fixture exercises a castTo or keepFloat32 rule');
  const a = await output(m, c), b = await output(h, c);
  const e = relMse(a, b);
  // float16 rounding, and a truncating Cast to int32 flips where it moves a value across an integer
  assert.ok(e < 1e-3, `relative MSE ${e}`);
}

for (const c of QUANT_CASES) test(`${c.check}: ${c.name}`, () => (c.check === 'qdq' ? checkQdq(c) : checkFp16(c)));
