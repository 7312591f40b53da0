/**
 * The core runs in a browser: read the compiled module graph (dist/src, type imports erased) the way a browser
 * bundler does, with package.json's "browser" substitutions applied, and check that no module of the core
 * reaches a Node module or onnxruntime-node. Also the isomorphic replacements of node:zlib and Buffer: masks
 * written by the previous version (node:zlib deflate) still load, gzip is checked as zlib checked it.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gzipSync as nodeGzip } from 'node:zlib';
import ts from 'typescript';
import { crc32, gunzipCapped } from '../src/data/inflate.js';
import { fromBase64, toBase64, decodeMask, encodeMask } from '../src/sparsity/masks.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DIST = join(ROOT, 'dist/src/');
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { browser: Record<string, string> };
const BROWSER = new Map(Object.entries(PKG.browser).map(([a, b]) => [resolve(ROOT, a), resolve(ROOT, b)]));

/** Adapters: they may reach Node (relative to dist/src, folders end in '/'). */
const ADAPTERS = ['cli/', 'fs/node.js', 'fs/default.js', 'fs/files.js', 'runtime/node.js', 'runtime/default.js', 'onnx/io.js', 'onnx/external.js',
  'train/replica-worker.js'];

/** Core modules that still reach Node through an adapter, with why. An entry that no longer does fails the test. */
const KNOWN: Record<string, string> = {
  'index.js': 'the Node face of the library: loadModel/saveModel and StreamedSave (onnx/io.js, files)',
};

function specifiers(file: string): string[] {
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, false, ts.ScriptKind.JS);
  const out: string[] = [];
  const visit = (n: ts.Node): void => {
    if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier && ts.isStringLiteral(n.moduleSpecifier)) out.push(n.moduleSpecifier.text);
    else if (ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.ImportKeyword && n.arguments[0] && ts.isStringLiteral(n.arguments[0])) out.push(n.arguments[0].text);
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

const bundled = (f: string) => BROWSER.get(f) ?? f;
const cache = new Map<string, string[]>();
const depsOf = (f: string) => cache.get(f) ?? cache.set(f, specifiers(f)).get(f)!;

/** A shortest import chain from `start` to a Node module or onnxruntime-node, as a bundler resolves it; null when none. */
function nodeChain(start: string, browser = true): string | null {
  const via = new Map<string, string | null>([[start, null]]);
  const queue = [start];
  while (queue.length) {
    const f = queue.shift()!;
    for (const s of depsOf(f)) {
      if (!s.startsWith('.')) {
        if (!isBuiltin(s) && s !== 'onnxruntime-node') continue;
        const chain = [s];
        for (let x: string | null = f; x !== null; x = via.get(x)!) chain.unshift(relative(DIST, x));
        return chain.join(' -> ');
      }
      const g = browser ? bundled(resolve(dirname(f), s)) : resolve(dirname(f), s);
      if (!via.has(g)) {
        via.set(g, f);
        queue.push(g);
      }
    }
  }
  return null;
}

const jsFiles = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? jsFiles(join(d, e.name)) : e.name.endsWith('.js') ? [join(d, e.name)] : []));
const under = (f: string, list: Iterable<string>) => [...list].find((a) => (a.endsWith('/') ? f.startsWith(a) : f === a));

test('the browser substitutions name modules that exist, and swap the Node defaults for none', () => {
  assert.equal(BROWSER.size, 2);
  for (const [from, to] of BROWSER) {
    assert.ok(from.startsWith(DIST) && to.startsWith(DIST));
    assert.ok(specifiers(from).some((s) => s.includes('node')), `${relative(ROOT, from)} installs a Node adapter`);
    assert.deepEqual(specifiers(to), [], `${relative(ROOT, to)} imports nothing`);
  }
});

test('no core module reaches a Node module or onnxruntime-node in a browser bundle (known exceptions listed, only while they still do)', () => {
  const files = jsFiles(DIST).map((f) => relative(DIST, f)).filter((f) => !under(f, ADAPTERS));
  assert.ok(files.length > 150, `${files.length} core modules`);
  const reach = new Map(files.map((f) => [f, nodeChain(bundled(join(DIST, f)))]));
  const unexpected = [...reach].filter(([f, c]) => c !== null && !under(f, Object.keys(KNOWN))).map(([, c]) => c);
  assert.deepEqual(unexpected, [], 'core modules reaching Node: put what they need behind fs/platform.ts or runtime/runtime.ts');
  const closed = Object.keys(KNOWN).filter((k) => ![...reach].some(([f, c]) => c !== null && under(f, [k])));
  assert.deepEqual(closed, [], 'these no longer reach Node: remove them from KNOWN');
  // the chain finder finds what it is about: the web adapter is clean, the Node entry is not
  assert.equal(reach.get('runtime/web.js'), null);
  assert.equal(reach.get('pipeline/run.js'), null, 'runPipeline (and the trainer under it) is browser-clean');
  assert.match(reach.get('index.js') ?? '', /node:/);
  // and the substitutions are what keeps the seams clean: without them the defaults bring Node in
  assert.equal(reach.get('runtime/runtime.js'), null);
  assert.equal(reach.get('fs/platform.js'), null);
  assert.equal(nodeChain(join(DIST, 'runtime/runtime.js'), false), 'runtime/runtime.js -> runtime/default.js -> runtime/node.js -> node:fs');
  assert.equal(nodeChain(join(DIST, 'fs/platform.js'), false), 'fs/platform.js -> fs/default.js -> fs/node.js -> node:fs');
});

test('masks written by the previous version (node:zlib deflateSync) still load; new ones round-trip', () => {
  // encodeMask of this mask before the move to fflate (node:zlib deflateSync, default level)
  const OLD = 'eJxrf1wg03e40ILv+EMLmXYcHA4AX4wRow==';
  const mask = new Uint8Array(300);
  for (let i = 0; i < 300; i++) mask[i] = (i * 7919) % 13 < 6 ? 1 : 0;
  assert.deepEqual(decodeMask(OLD, 300), mask);
  assert.deepEqual(decodeMask(encodeMask(mask), 300), mask);
  // a flipped bit in the compressed stream is caught (fflate does not check Adler-32; masks.ts does)
  const z = fromBase64(OLD);
  z[z.length - 1]! ^= 1;
  assert.throws(() => decodeMask(toBase64(z), 300), /corrupt 'shears.masks' metadata: incorrect data check/);
  assert.throws(() => decodeMask('not base64!', 300), /corrupt 'shears.masks' metadata/);
  for (const n of [0, 1, 2, 3, 4, 5, 100]) {
    const b = Uint8Array.from({ length: n }, (_, i) => (i * 37 + 11) & 255);
    assert.equal(toBase64(b), Buffer.from(b).toString('base64'));
    assert.deepEqual(fromBase64(toBase64(b)), b);
  }
});

test('gunzipCapped (fflate) checks what zlib checked: CRC-32, size, truncation, a cap; multi-member files', () => {
  const data = Uint8Array.from({ length: 5000 }, (_, i) => (i * i) & 255);
  const gz = new Uint8Array(nodeGzip(data));
  assert.deepEqual(gunzipCapped(gz, 5000, 'f', 'why'), data);
  assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926);
  assert.throws(() => gunzipCapped(gz, 4999, 'f', 'its header'), /'f' inflates to more than 4999 bytes, its header/);
  assert.throws(() => gunzipCapped(gz.subarray(0, gz.length - 6), 5000, 'f', 'why'), /'f' is a corrupt or truncated gzip file/);
  const bad = gz.slice();
  bad[bad.length - 8]! ^= 1;
  assert.throws(() => gunzipCapped(bad, 5000, 'f', 'why'), /'f' is a corrupt or truncated gzip file \(incorrect data check\)/);
  const two = new Uint8Array([...gz, ...nodeGzip(data.subarray(0, 100))]);
  assert.deepEqual(gunzipCapped(two, 5100, 'f', 'why'), new Uint8Array([...data, ...data.subarray(0, 100)]));
  assert.throws(() => gunzipCapped(new Uint8Array(0), 10, 'f', 'why'), /corrupt or truncated/);
});
