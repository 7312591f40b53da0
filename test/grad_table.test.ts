/**
 * Runs the registry's gradient table (test/cases/grad-cases.ts, one case or more per OpDef.grad rule) through the
 * finite-difference harness. test/registry-coverage.test.ts checks that the table reaches every rule.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GRAD_CASES } from './cases/grad-cases.js';
import { gradCheck } from './gradcheck.js';

for (const entry of GRAD_CASES) {
  test(`finite differences: ${entry.name}`, async () => {
    const r = await gradCheck(entry.case);
    assert.deepEqual(r.failures, [], `max rel err ${r.maxErr} (${r.dtype})`);
    assert.ok(r.checked > 0);
    if (entry.double) assert.equal(r.dtype, 'float64', 'onnxruntime ran the case in float64');
  });
}
