/**
 * The layering of src/, checked by reading its imports: every `import ... from`, `export ... from`, dynamic
 * `import()` and `import('...')` type, type-only ones included (a type is a dependency too), parsed with the
 * TypeScript parser (comments and strings cannot fool it).
 *
 * The rule. Each top-level folder (or file) of src/ sits in one layer of LAYERS, lowest first; a module may
 * import its own folder and the layers below its own, never a layer above, and never a peer (folders of one
 * layer are independent of each other). Files of one folder may import each other, but no set of modules may
 * import each other in a cycle. A new folder must be given a layer here before the test passes.
 *
 * The layers, and why the folders the design does not name sit where they do:
 * - errors.ts, random.ts: the foundations (the error type, seeded random numbers); they import nothing of ours.
 * - ir, fs: the model representation; fs is the host seam: platform.ts (files, paths, machine facts, worker
 *   threads, report assets: what the core asks of its host) and its Node adapter (node.ts, and the atomic
 *   writes and protected inputs of files.ts that onnx/io.ts writes through), so it sits just under onnx.
 * - onnx, data: ONNX encoding and model files; data sets (readers, preprocessing, in-memory arrays) give
 *   tensors of ir and need nothing of the model code.
 * - ops, runtime: the op registry; the onnxruntime adapter (sessions over ir models, encoded by onnx).
 * - analysis, metrics: graph passes over the registry (shapes, cost, simplify; a few run onnxruntime); accuracy,
 *   fidelity and latency measured with onnxruntime on data sets.
 * - depgraph, sparsity, autodiff: the dependency graph, masks and unstructured pruning, gradient graphs.
 * - importance, plan, repair, train, quant, report: the stages; report (evidence gathering and HTML) stands
 *   beside quant: it measures models, it does not prune them.
 * - prune: structured pruning and the iterative schedules (which prune and fine-tune in turns).
 * - pipeline: the conductor of the steps.
 * - cli, index.ts: the two faces of the library, the command line and the curated public API; neither imports
 *   the other.
 *
 * Node's own modules (node:fs, ...) are for the adapters only: NODE_ALLOWED. Files that import one without being
 * an adapter would be listed in NODE_EXCEPTIONS (empty now); the list cannot grow silently, and an entry whose
 * file no longer imports a Node module fails the test until it is removed. test/isomorphic.test.ts checks the
 * other half: that no core module reaches an adapter's Node imports in a browser bundle.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** Layers of src/, lowest first; the entries of one layer are peers. */
const LAYERS: readonly (readonly string[])[] = [
  ['errors.ts', 'random.ts', 'units.ts'],
  ['ir', 'fs'],
  ['onnx', 'data'],
  ['ops', 'runtime'],
  ['analysis', 'metrics'],
  ['depgraph', 'sparsity', 'autodiff'],
  ['importance', 'plan', 'repair', 'train', 'quant', 'report'],
  ['prune'],
  ['pipeline'],
  ['cli', 'index.ts'],
];

/** Files and folders (ending in '/') of src/ that may import Node's own modules: the adapters. */
const NODE_ALLOWED: readonly string[] = [
  'cli/',
  'fs/',
  'onnx/io.ts',
  // reads external data byte ranges from the files beside a model (io.ts's loading side)
  'onnx/external.ts',
  'runtime/',
  // the replica worker's entry: it runs in a Node worker thread (the platform starts it: fs/node.ts)
  'train/replica-worker.ts',
];

/**
 * Other files importing Node modules today, with what for: known exceptions. Empty since the browser issue
 * (file, machine and asset access went behind fs/platform.ts, onnxruntime behind runtime/runtime.ts, zlib to
 * fflate); keep it so.
 */
const NODE_EXCEPTIONS: Record<string, string> = {};

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

interface Import {
  /** Importing file, relative to src/. */
  from: string;
  line: number;
  specifier: string;
  /** The imported file relative to src/, for relative specifiers. */
  to?: string;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? sourceFiles(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

/** Every import of one file: declarations, re-exports, dynamic import() and import('...') types. */
function importsOf(path: string): Import[] {
  const from = relative(SRC, path);
  const sf = ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.Latest, true);
  const out: Import[] = [];
  const add = (spec: ts.Node) => {
    if (!ts.isStringLiteralLike(spec)) return;
    const specifier = spec.text;
    const line = sf.getLineAndCharacterOfPosition(spec.getStart(sf)).line + 1;
    const imp: Import = { from, line, specifier };
    if (specifier.startsWith('.')) imp.to = relative(SRC, resolve(dirname(path), specifier.replace(/\.js$/, '.ts')));
    out.push(imp);
  };
  const visit = (n: ts.Node): void => {
    if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier) add(n.moduleSpecifier);
    else if (ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.ImportKeyword && n.arguments[0]) add(n.arguments[0]);
    else if (ts.isImportTypeNode(n) && ts.isLiteralTypeNode(n.argument)) add(n.argument.literal);
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

const FILES = sourceFiles(SRC).map((p) => relative(SRC, p)).sort();
const IMPORTS = FILES.flatMap((f) => importsOf(join(SRC, f)));
const LOCAL = IMPORTS.filter((i) => i.to !== undefined);

/** The top-level folder (or file) of a path relative to src/. */
const unitOf = (file: string) => file.split('/')[0]!;
const rankOf = (unit: string) => LAYERS.findIndex((l) => l.includes(unit));
const where = (i: Import) => `src/${i.from}:${i.line} → ${i.to !== undefined ? `src/${i.to}` : i.specifier}`;

test('the layering test reads the imports it is about', () => {
  // A parser that found nothing would pass every check below.
  assert.ok(FILES.length > 100, `${FILES.length} files under src/`);
  const find = (from: string, to: string) => LOCAL.some((i) => i.from === from && i.to === to);
  assert.ok(find('index.ts', 'errors.ts'), 'index.ts re-exports errors.ts (export ... from)');
  assert.ok(find('train/bn.ts', 'autodiff/shapes.ts'), 'train/bn.ts imports autodiff/shapes.ts (dynamic import())');
  assert.ok(IMPORTS.some((i) => i.from === 'onnx/io.ts' && i.specifier === 'node:fs'), 'onnx/io.ts imports node:fs');
});

test('every import names a file of src/', () => {
  const missing = LOCAL.filter((i) => !existsSync(join(SRC, i.to!)));
  assert.deepEqual(missing.map(where), []);
});

test('every folder and top-level file of src/ has a layer', () => {
  const units = [...new Set(FILES.map(unitOf))];
  assert.deepEqual(units.filter((u) => rankOf(u) < 0), [], 'give these a layer in LAYERS');
  const all = LAYERS.flat();
  assert.equal(new Set(all).size, all.length, 'an entry is in two layers');
});

test('no import runs up the layers or across peers', () => {
  const bad: string[] = [];
  for (const i of LOCAL) {
    const a = unitOf(i.from);
    const b = unitOf(i.to!);
    if (a === b) continue;
    const ra = rankOf(a);
    const rb = rankOf(b);
    if (rb > ra) bad.push(`${where(i)}: ${a} (layer ${ra}) imports ${b} (layer ${rb}, above it)`);
    else if (rb === ra) bad.push(`${where(i)}: ${a} imports its peer ${b} (layer ${ra})`);
  }
  assert.deepEqual(bad, []);
});

/** The import cycles: one path per strongly connected component of the module graph (Tarjan). */
function cycles(edges: Map<string, Import[]>): string[] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[] = [];
  const connect = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const { to: w } of edges.get(v) ?? []) {
      if (!index.has(w!)) {
        connect(w!);
        low.set(v, Math.min(low.get(v)!, low.get(w!)!));
      } else if (onStack.has(w!)) low.set(v, Math.min(low.get(v)!, index.get(w!)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const scc = new Set<string>();
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      scc.add(w);
    } while (w !== v);
    const self = (edges.get(v) ?? []).find((i) => i.to === v);
    if (scc.size > 1 || self) out.push(cyclePath(v, scc, edges));
  };
  for (const f of FILES) if (!index.has(f)) connect(f);
  return out;
}

/** A shortest import path from `start` back to itself inside its component, with the importing lines. */
function cyclePath(start: string, scc: Set<string>, edges: Map<string, Import[]>): string {
  const via = new Map<string, Import>();
  const queue = [start];
  while (queue.length) {
    const v = queue.shift()!;
    for (const i of edges.get(v) ?? []) {
      if (!scc.has(i.to!) || via.has(i.to!)) continue;
      via.set(i.to!, i);
      if (i.to === start) queue.length = 0;
      else queue.push(i.to!);
    }
  }
  const steps: Import[] = [];
  let at = start;
  do {
    const i = via.get(at)!;
    steps.unshift(i);
    at = i.from;
  } while (at !== start);
  return [`src/${start}`, ...steps.map((i) => `(line ${i.line}) → src/${i.to}`)].join(' ');
}

test('no import cycles', () => {
  const edges = new Map<string, Import[]>();
  for (const i of LOCAL) edges.set(i.from, [...(edges.get(i.from) ?? []), i]);
  assert.deepEqual(cycles(edges), []);
});

test('only the adapters import Node modules (known exceptions listed, and only while they still do)', () => {
  const allowed = (f: string) => NODE_ALLOWED.some((a) => (a.endsWith('/') ? f.startsWith(a) : f === a));
  const users = new Set(IMPORTS.filter((i) => isBuiltin(i.specifier)).map((i) => i.from));
  const unexpected = IMPORTS.filter((i) => isBuiltin(i.specifier) && !allowed(i.from) && !(i.from in NODE_EXCEPTIONS));
  assert.deepEqual(unexpected.map(where), [], 'Node modules outside the adapters (keep the code portable: take data, not paths)');
  const closed = Object.keys(NODE_EXCEPTIONS).filter((f) => !users.has(f));
  assert.deepEqual(closed, [], 'these no longer import a Node module: remove them from NODE_EXCEPTIONS');
  const needless = Object.keys(NODE_EXCEPTIONS).filter(allowed);
  assert.deepEqual(needless, [], 'these are adapters (NODE_ALLOWED): not exceptions');
});
