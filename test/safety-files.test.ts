/**
 * The user's files are sacred: no command writes over its input (by any path), outputs are checked before any
 * work, and every write is atomic (a killed or failed write leaves the old file, and no temporary behind).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ShearsError } from '../src/errors.js';
import { AtomicFile, clearProtectedInputs, protectInput, writeFileAtomic } from '../src/fs/files.js';
import { loadModel } from '../src/onnx/io.js';
import { FIXTURE_MODEL, isUserError, shears } from './cli-helpers.js';

const md5 = (p: string) => createHash('md5').update(readFileSync(p)).digest('hex');
const temps = (dir: string) => readdirSync(dir).filter((n) => n.includes('.shears-tmp-'));
const DEMO = fileURLToPath(new URL('../../data/fashion-mnist-demo', import.meta.url));

function workDir(): string {
  return mkdtempSync(join(tmpdir(), 'shears-safety-'));
}

test('no command writes over its input: same path, ./ path, symlink and hard link are refused before any work', () => {
  const dir = workDir();
  const m = join(dir, 'm.onnx');
  copyFileSync(FIXTURE_MODEL, m);
  symlinkSync(m, join(dir, 'link.onnx'));
  linkSync(m, join(dir, 'hard.onnx'));
  const before = md5(m);
  const outs = [m, join(dir, '.', 'm.onnx'), join(dir, 'link.onnx'), join(dir, 'hard.onnx')];
  for (const out of outs) {
    // every command on the plain path; the other paths to the same file on the commonest one
    const runs = out !== m ? [['prune', m, '-o', out, '--sparsity', '0.5']] : [
      ['prune', m, '-o', out, '--sparsity', '0.5'],
      ['prune', m, '-o', out, '--structured', '--target-macs', '0.5', '--repair', 'lsq', '--calib', `${DEMO}@train`],
      ['quantize', m, '-o', out, '--mode', 'fp16'],
      ['repair', join(dir, 'link.onnx'), '--dense', m, '-o', out, '--calib', `${DEMO}@train`],
      ['finetune', FIXTURE_MODEL, '--teacher', m, '--train', `${DEMO}@train`, '-o', out],
      ['rebatch', m, '-o', out],
      ['nm-gemm', m, '-o', out],
    ];
    for (const args of runs) {
      const r = shears(args);
      assert.ok(isUserError(r), `${args.join(' ')}: ${r.code} ${r.stderr}`);
      assert.match(r.stderr, /is the input .*never writes over its input/);
    }
  }
  assert.equal(md5(m), before, 'the input is untouched');
  // an output may not be named twice either
  const plan = shears(['prune', m, '-o', join(dir, 'a.onnx'), '--structured', '--ratio', '0.3', '--save-plan', join(dir, 'link.onnx')]);
  assert.ok(isUserError(plan), plan.stderr);
  rmSync(dir, { recursive: true });
});

test('outputs are validated before data is read or anything runs: folder, extension, folder-as-file, missing -o', () => {
  const dir = workDir();
  // a bad data spec is given too: the output error must come first (nothing was loaded)
  const cases: [string[], RegExp][] = [
    [['prune', FIXTURE_MODEL, '-o', join(dir, 'missing', 'out.onnx'), '--sparsity', '0.5', '--repair', 'lsq', '--calib', '/no/such/data'], /folder '.*missing' does not exist/],
    [['prune', FIXTURE_MODEL, '-o', join(dir, 'out.json'), '--sparsity', '0.5'], /expected a \.onnx file name/],
    [['prune', FIXTURE_MODEL, '-o', dir, '--sparsity', '0.5'], /is a folder/],
    [['prune', FIXTURE_MODEL, '--sparsity', '0.5'], /missing -o\/--output/],
    [['quantize', FIXTURE_MODEL, '-o', join(dir, 'nope', 'q.onnx'), '--calib', '/no/such/data'], /does not exist/],
    [['finetune', FIXTURE_MODEL, '--train', '/no/such/data', '-o', join(dir, 'f.onnx'), '--checkpoint', join(dir, 'x', 'c.onnx')], /--checkpoint .* does not exist/],
    [['report', FIXTURE_MODEL, '--html', join(dir, 'r.txt')], /expected a \.html or \.htm file name/],
    [['prune', FIXTURE_MODEL, '-o', join(dir, 'p.onnx'), '--structured', '--ratio', '0.3', '--save-plan', join(dir, 'plan.onnx')], /--save-plan .*expected a \.json/],
  ];
  for (const [args, re] of cases) {
    const r = shears(args);
    assert.ok(isUserError(r), `${args.join(' ')}: ${r.code} ${r.stderr}`);
    assert.match(r.stderr, re);
  }
  assert.deepEqual(readdirSync(dir), [], 'nothing was written');
  rmSync(dir, { recursive: true });
});

test('replacing an existing (non-input) output is said on stderr, and the old file stays until the new one is complete', () => {
  const dir = workDir();
  const out = join(dir, 'out.onnx');
  writeFileSync(out, 'old');
  const r = shears(['prune', FIXTURE_MODEL, '-o', out, '--sparsity', '0.3']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /replacing '.*out\.onnx'/);
  assert.ok(loadModel(out).graph.nodes.length > 10);
  assert.deepEqual(temps(dir), []);
  rmSync(dir, { recursive: true });
});

test('writeFileAtomic: writes through a symlink, refuses a protected input, cleans temporaries of dead processes', () => {
  const dir = workDir();
  const target = join(dir, 'real.bin');
  writeFileSync(target, 'old');
  symlinkSync(target, join(dir, 'link.bin'));
  writeFileAtomic(join(dir, 'link.bin'), 'new');
  assert.equal(readFileSync(target, 'utf8'), 'new', 'written through the link');
  assert.ok(statSync(join(dir, 'link.bin'), { throwIfNoEntry: true }) && existsSync(join(dir, 'link.bin')));
  // a temporary left by a process that no longer exists (pid 2^22 + 1 is above Linux's pid_max default) is removed
  const stale = join(dir, `.real.bin.shears-tmp-${2 ** 22 + 1}-deadbeef`);
  writeFileSync(stale, 'partial');
  writeFileAtomic(target, 'newer');
  assert.ok(!existsSync(stale));
  protectInput(target);
  assert.throws(() => writeFileAtomic(join(dir, 'link.bin'), 'x'), (e: unknown) => e instanceof ShearsError && /is the input/.test(e.message));
  assert.equal(readFileSync(target, 'utf8'), 'newer');
  clearProtectedInputs();
  // an aborted file leaves nothing behind
  const f = new AtomicFile(join(dir, 'aborted.bin'));
  f.write(new Uint8Array(1000));
  f.abort();
  assert.ok(!existsSync(join(dir, 'aborted.bin')));
  assert.deepEqual(temps(dir), []);
  rmSync(dir, { recursive: true });
});

test('a full disk: the write fails with a user error, the old file is intact and no temporary is left (tmpfs)', (t) => {
  const dir = workDir();
  const mnt = join(dir, 'small');
  mkdirSync(mnt);
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mnt]);
  if (m.status !== 0) {
    t.skip('cannot mount a tmpfs here (needs root)');
    rmSync(dir, { recursive: true });
    return;
  }
  try {
    const dest = join(mnt, 'model.onnx');
    writeFileSync(dest, 'the old model');
    assert.throws(() => writeFileAtomic(dest, new Uint8Array(1 << 20)), (e: unknown) => e instanceof ShearsError && /no space left on the device.*nothing was replaced/.test(e.message));
    assert.equal(readFileSync(dest, 'utf8'), 'the old model');
    assert.deepEqual(temps(mnt), []);
    // the CLI says the same in one line, exit 2, and saves the result in a rescue folder of the temporary
    // folder (here the test's own, so that nothing is left behind)
    const r = shears(['prune', FIXTURE_MODEL, '-o', dest, '--sparsity', '0.5'], { env: { TMPDIR: dir } });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr.trim().split('\n').at(-1)!, /^shears: error: cannot write .*no space left/);
    const rescued = /saved to '([^']+)' instead/.exec(r.stderr)?.[1];
    assert.ok(rescued?.startsWith(dir) && existsSync(rescued), r.stderr);
    assert.equal(readFileSync(dest, 'utf8'), 'the old model');
    assert.deepEqual(temps(mnt), []);
  } finally {
    spawnSync('umount', [mnt]);
    rmSync(dir, { recursive: true });
  }
});

test('SIGKILL in the middle of saving a large model leaves the old file or the whole new one, never a partial one', async () => {
  const dir = workDir();
  const dest = join(dir, 'big.onnx');
  writeFileSync(dest, 'previous version');
  const script = join(dir, 'save.mjs');
  const io = new URL('../src/onnx/io.js', import.meta.url).href;
  const builder = new URL('../src/ir/builder.js', import.meta.url).href;
  // a 256 MB model: large enough that the write is still running when the kill lands
  writeFileSync(script, `
    import { saveModel } from ${JSON.stringify(io)};
    import { GraphBuilder } from ${JSON.stringify(builder)};
    const b = new GraphBuilder('big');
    b.input('x', [1, 4096]);
    let h = 'x';
    for (let i = 0; i < 4; i++) {
      const w = new Float32Array(4096 * 4096).fill(i + 1);
      b.init('w' + i, { dtype: 1, dims: [4096, 4096], data: w });
      h = b.node('MatMul', [h, 'w' + i]);
    }
    b.node('Identity', [h], {}, { output: 'y' });
    b.output('y', [1, 4096]);
    const m = b.model(17);
    process.stdout.write('start\\n');
    saveModel(m, ${JSON.stringify(dest)});
    process.stdout.write('saved\\n');
  `);
  const outcomes: string[] = [];
  for (const delayMs of [0, 150, 400]) {
    const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => d.toString().includes('start') && resolve()));
    // wait until the temporary exists (the write has begun), then a little longer
    for (let i = 0; i < 2000 && temps(dir).length === 0 && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, delayMs));
    child.kill('SIGKILL');
    await new Promise((r) => child.on('exit', r));
    const content = readFileSync(dest);
    if (content.toString() === 'previous version') outcomes.push('old');
    else {
      const m = loadModel(dest);
      assert.equal(m.graph.initializers.size, 4, 'a new file is the complete model');
      outcomes.push('new');
    }
  }
  assert.ok(outcomes.includes('old'), `at least one kill landed mid-write: ${outcomes.join(',')}`);
  // the next write to the same destination removes what the killed processes left
  writeFileAtomic(dest, 'next run');
  assert.deepEqual(temps(dir), []);
  rmSync(dir, { recursive: true });
});
