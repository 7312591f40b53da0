/** Never silently do nothing: a prune run that selects nothing fails with the reason and writes no file. */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { FIXTURE_MODEL, isUserError, shears } from './cli-helpers.js';

test('prune runs that select nothing exit 2 with the reason and write nothing', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-noop-'));
  const out = join(dir, 'out.onnx');
  const cases: [string[], RegExp][] = [
    [['--sparsity', '0.5', '--include', 'no-such-layer'], /nothing was pruned: no layer weight was selected \(22 skipped: .*not matched by include/],
    [['--sparsity', '0'], /nothing was pruned: the selected weights are already pruned/],
    [['--structured', '--ratio', '0.3', '--ignore', '.*'], /nothing was pruned: no prunable channels \(frozen: 65 x ignored \(--ignore\)/],
    [['--structured', '--ratio', '0.0001'], /nothing was pruned: the target keeps every channel/],
  ];
  for (const [args, re] of cases) {
    const r = shears(['prune', FIXTURE_MODEL, '-o', out, ...args]);
    const last = r.stderr.trim().split('\n').at(-1)!;
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.ok(isUserError({ ...r, stderr: last }), last);
    assert.match(last, re);
    assert.ok(!existsSync(out), `${args.join(' ')} wrote no file`);
  }
  rmSync(dir, { recursive: true });
});
