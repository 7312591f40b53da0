/**
 * The onnxruntime-web adapter, run in Node (its WebAssembly backend works there): the same models give the
 * same outputs as with onnxruntime-node, and a structured prune + repair through the library writes the same
 * model bytes with either runtime installed (the browser's download equals the CLI's output).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import * as ortWeb from 'onnxruntime-web';
import { activationStats } from '../src/importance/activation.js';
import { GraphBuilder } from '../src/ir/builder.js';
import type { Model } from '../src/ir/graph.js';
import { floatTensor, type Tensor } from '../src/ir/tensor.js';
import { encodeModel } from '../src/onnx/codec.js';
import { parseModelBytes } from '../src/onnx/parse.js';
import { openDataset } from '../src/data/index.js';
import { setPlatform, type Platform } from '../src/fs/platform.js';
import { runPipeline } from '../src/pipeline/run.js';
import { parseRecipe } from '../src/pipeline/recipe.js';
import { openData } from '../src/cli/data.js';
import { CLI, FIXTURE_MODEL } from './cli-helpers.js';
import { pruneStructured } from '../src/prune/structured/index.js';
import { repair } from '../src/repair/index.js';
import { nodeRuntime } from '../src/runtime/node.js';
import { getRuntime, setRuntime } from '../src/runtime/runtime.js';
import { createSession, ortName, runOnce } from '../src/runtime/session.js';
import { webRuntime } from '../src/runtime/web.js';
import { images, randn, tinyCnn } from './repair-fixture.js';

before(() => {
  // one wasm thread: no worker threads to start in Node, results that do not depend on the machine
  ortWeb.env.wasm.numThreads = 1;
});
after(() => {
  setRuntime(nodeRuntime);
});

/** Runs `fn` with `r` installed, and puts the previous runtime back. */
async function using<T>(r: typeof nodeRuntime, fn: () => Promise<T>): Promise<T> {
  const prev = setRuntime(r);
  try {
    return await fn();
  } finally {
    setRuntime(prev);
  }
}

/** x [N,16] -> MatMul [16,32] + b -> Relu -> MatMul [32,10] -> Softmax(axis -1). */
function mlpSoftmax(): Model {
  const b = new GraphBuilder('mlp');
  const x = b.input('x', ['N', 16]);
  const h = b.node('Add', [b.node('MatMul', [x, b.init('w1', floatTensor([16, 32], randn(512, 11, 0.3)))]), b.init('b1', floatTensor([32], randn(32, 12, 0.1)))]);
  const r = b.node('Relu', [h]);
  const l = b.node('MatMul', [r, b.init('w2', floatTensor([32, 10], randn(320, 13, 0.3)))]);
  b.output(b.node('Softmax', [l], { axis: -1 }, { output: 'y' }), ['N', 10]);
  return b.model(17);
}

const maxAbsDiff = (a: Tensor, b: Tensor) => {
  assert.deepEqual(a.dims, b.dims);
  const x = a.data as Float32Array;
  const y = b.data as Float32Array;
  assert.equal(x.length, y.length);
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  return m;
};

test('the default runtime in Node is onnxruntime-node; setRuntime installs onnxruntime-web', async () => {
  assert.equal(getRuntime().name, 'onnxruntime-node');
  assert.equal(ortName(), 'onnxruntime-node');
  await using(webRuntime, async () => {
    assert.equal(ortName(), 'onnxruntime-web');
    assert.match(webRuntime.version(), /^1\.30\./);
  });
  assert.equal(ortName(), 'onnxruntime-node');
});

test('onnxruntime-web gives the outputs of onnxruntime-node: a residual Conv net and a MatMul/Softmax net', async () => {
  const cases: [string, Model, Record<string, Tensor>][] = [
    ['conv', tinyCnn(), { x: floatTensor([4, 3, 8, 8], randn(4 * 3 * 64, 21)) }],
    ['mlp', mlpSoftmax(), { x: floatTensor([5, 16], randn(80, 22)) }],
  ];
  for (const [name, model, feeds] of cases) {
    const bytes = encodeModel(model);
    const viaNode = await using(nodeRuntime, () => runOnce(bytes, feeds, { threads: 1 }));
    const viaWeb = await using(webRuntime, () => runOnce(bytes, feeds, { threads: 1 }));
    const y = Object.keys(viaNode)[0]!;
    const d = maxAbsDiff(viaNode[y]!, viaWeb[y]!);
    const scale = Math.max(...(viaNode[y]!.data as Float32Array).map(Math.abs));
    console.log(`# ${name}: max |node - web| = ${d.toExponential(2)} (outputs up to ${scale.toFixed(3)})`);
    assert.ok(scale > 0.01, `${name}: outputs are not all ~0`);
    assert.ok(d <= 1e-5, `${name}: max abs diff ${d}`);
  }
});

test('onnxruntime-web refuses what it cannot do with a clear message', async () => {
  await using(webRuntime, async () => {
    await assert.rejects(createSession('/some/model.onnx'), /onnxruntime-web cannot open a model by path/);
    await assert.rejects(createSession(new Uint8Array([1, 2, 3])), /onnxruntime cannot load the model/);
  });
});

/** A structured prune (activation importance, measured with the runtime), and with `method` an lsq repair. */
async function pruneAndRepair(method?: 'lsq'): Promise<Model> {
  const dense = tinyCnn();
  const calib = images(48, 31);
  const activations = await activationStats(dense, calib, { batchSize: 16, threads: 1 });
  const r = pruneStructured(dense, { targetMacs: 0.5, importance: 'activation', activations });
  return method ? (await repair(dense, r.model, calib, { method, batchSize: 16, threads: 1 })).model : r.model;
}

const shapes = (m: Model) => [...m.graph.initializers].map(([k, t]) => `${k}:${t.dims.join('x')}`).join(' ');
const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

test('structured prune through the library: the same bytes with either runtime; repaired weights agree to ~1e-6', async () => {
  const pruned = [await using(nodeRuntime, () => pruneAndRepair()), await using(webRuntime, () => pruneAndRepair())];
  assert.notEqual(shapes(pruned[0]!), shapes(tinyCnn()), 'the prune removed nothing');
  assert.ok(same(encodeModel(pruned[0]!), encodeModel(pruned[1]!)), 'the pruned model bytes differ');
  // repair writes weights computed from the runtimes' outputs, which round differently in the last bits
  const [a, b] = [await using(nodeRuntime, () => pruneAndRepair('lsq')), await using(webRuntime, () => pruneAndRepair('lsq'))];
  assert.equal(shapes(b), shapes(a));
  let d = 0;
  for (const [k, t] of a.graph.initializers) {
    const x = t.data as Float32Array;
    const y = b.graph.initializers.get(k)!.data as Float32Array;
    for (let i = 0; i < x.length; i++) d = Math.max(d, Math.abs(x[i]! - y[i]!));
  }
  console.log(`# pruned ${shapes(a)}; repaired weights: max |node - web| = ${d.toExponential(2)}, bytes ${same(encodeModel(a), encodeModel(b)) ? 'equal' : 'differ'}`);
  assert.ok(d < 1e-4, `repaired weights differ by ${d}`);
});

const DEMO = fileURLToPath(new URL('../../data/fashion-mnist-demo', import.meta.url));
const RECIPE = `format: shears.recipe
version: 1
preprocess: { scale: 1/255, mean: [0.2860], std: [0.3530] }
steps:
  - kind: prune
    mode: structured
    target: { kind: macs, value: 0.5 }
    calib: $calib
  - kind: repair
    methods: [lsq]
    calib: $calib
    calibSize: 64
`;

/**
 * A platform over files held in memory, as a page holds dropped File objects: no Node module involved in
 * reading data. Paths are '/'-separated.
 */
function memoryPlatform(files: Map<string, Uint8Array>): Platform {
  const missing = (p: string) => Object.assign(new Error(`ENOENT: '${p}'`), { code: 'ENOENT' });
  const isDir = (p: string) => [...files.keys()].some((k) => k.startsWith(`${p}/`));
  const get = (p: string) => files.get(p) ?? (() => { throw missing(p); })();
  return {
    name: 'memory',
    stat: (p) => (files.has(p) ? { isFile: true, isDirectory: false, size: files.get(p)!.length } : isDir(p) ? { isFile: false, isDirectory: true, size: 0 } : (() => { throw missing(p); })()),
    read: (p, offset, length) => get(p).slice(offset, offset + length),
    readFile: async (p) => get(p).slice(),
    list: (dir) => {
      if (!isDir(dir)) throw missing(dir);
      return [...new Set([...files.keys()].filter((k) => k.startsWith(`${dir}/`)).map((k) => k.slice(dir.length + 1).split('/')[0]!))];
    },
    join: (...parts) => parts.join('/').replace(/\/+/g, '/'),
    dirname: (p) => p.slice(0, Math.max(0, p.lastIndexOf('/'))) || '/',
    basename: (p) => p.slice(p.lastIndexOf('/') + 1),
    machine: () => ({ host: 'test page', cpu: 'unknown', cores: 2, platform: 'browser' }),
    availableParallelism: () => 2,
    asset: () => '',
  };
}

test('SHEARS_RUNTIME=web: the CLI writes the very bytes a page computes (onnxruntime-web, files in memory, model from bytes)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-web-'));
  const recipeFile = join(dir, 'r.yaml');
  writeFileSync(recipeFile, RECIPE);
  const cli = (runtime: string, out: string) => spawnSync(process.execPath, [CLI, 'run', recipeFile, FIXTURE_MODEL, '-o', out, '--data', `calib=${DEMO}@train`], {
    encoding: 'utf8', timeout: 300_000, env: { ...process.env, SHEARS_RUNTIME: runtime },
  });
  const r = cli('web', join(dir, 'cli-web.onnx'));
  assert.equal(r.status, 0, r.stderr);
  // the page: the model and the data as bytes in memory, the web runtime, no file access through Node
  const files = new Map(readdirSync(DEMO).map((n) => [`/drop/demo/${n}`, new Uint8Array(readFileSync(join(DEMO, n)))]));
  const inputBytes = new Uint8Array(readFileSync(FIXTURE_MODEL));
  const prevPlatform = setPlatform(memoryPlatform(files));
  let pageBytes: Uint8Array;
  try {
    const result = await using(webRuntime, () => runPipeline(parseModelBytes(inputBytes), parseRecipe(RECIPE, 'r.yaml'), { openData, inputBytes, data: { calib: '/drop/demo@train' } }));
    pageBytes = encodeModel(result.model);
    // nothing of the real file system is reachable through the installed platform
    assert.throws(() => openDataset(`${DEMO}@train`, {}), /ENOENT|no such|cannot|does not exist/i);
  } finally {
    setPlatform(prevPlatform);
  }
  const cliBytes = readFileSync(join(dir, 'cli-web.onnx'));
  assert.ok(cliBytes.equals(Buffer.from(pageBytes)), 'the CLI (SHEARS_RUNTIME=web) and the page path wrote different models');
  // the default CLI (onnxruntime-node) prunes the same channels; the repaired weights differ in the last bits
  const n = cli('node', join(dir, 'cli-node.onnx'));
  assert.equal(n.status, 0, n.stderr);
  const [a, b] = [parseModelBytes(new Uint8Array(readFileSync(join(dir, 'cli-node.onnx')))), parseModelBytes(pageBytes)];
  assert.equal(shapes(b), shapes(a));
  console.log(`# CLI (node) vs page (web): ${readFileSync(join(dir, 'cli-node.onnx')).equals(Buffer.from(pageBytes)) ? 'same bytes' : 'same structure, bytes differ'}; ${pageBytes.length} bytes`);
  const bad = cli('wasm', join(dir, 'x.onnx'));
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /^shears: error: SHEARS_RUNTIME must be 'node' or 'web', not 'wasm'\n$/);
});

test('without a platform or a runtime installed (a page that forgot), the core says what to call', async () => {
  const prevPlatform = setPlatform(undefined);
  const prevRuntime = setRuntime(undefined);
  try {
    assert.throws(() => openDataset('/x@train', {}), /no platform installed: call setPlatform\(\)/);
    await assert.rejects(runOnce(encodeModel(mlpSoftmax()), {}), /no onnxruntime installed: call setRuntime\(webRuntime\)/);
  } finally {
    setPlatform(prevPlatform);
    setRuntime(prevRuntime);
  }
});
