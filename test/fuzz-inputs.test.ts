/**
 * Seeded fuzzing of every input format: a small .onnx (the bundled fixture), IDX (raw and gzipped), npy, npz,
 * PNG and JPEG folders, each mutated by bit flips, truncations, byte insertions and header-field overwrites.
 * Every mutation is read in process the way `shears inspect` / `shears eval` read it, where the only error
 * allowed out is a ShearsError (exit 2); a sample of each format and each kind of mutation runs through the
 * real CLI, which must exit 0 or 2 (never 1, the 'internal error' of a bug), never hang and stay in bounded
 * memory. Deterministic: the same seed gives the same files.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { zipSync } from 'fflate';
import { assertRunnableOps, inspectModel } from '../src/analysis/inspect.js';
import { parseInputShapes, staticInputShapes } from '../src/cli/args.js';
import { readIdx } from '../src/data/idx.js';
import { preprocessFor } from '../src/data/preprocess.js';
import { openDataset } from '../src/data/spec.js';
import { ShearsError } from '../src/errors.js';
import type { Model } from '../src/ir/graph.js';
import { loadModel } from '../src/onnx/io.js';
import { rng } from '../src/random.js';
import { FIXTURE_MODEL } from './cli-helpers.js';
import { idxBytes, jpegBytes, npyBytes, pngBytes, tempDir } from './data-helpers.js';
import { describeRun, fixPngCrc, npyWith, pb, runMeasured, type MeasuredRun } from './hostile-helpers.js';

const SEED = 11_05;
const DEMO = fileURLToPath(new URL('../../data/fashion-mnist-demo/', import.meta.url));
const N = 8; // samples in each data file

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const int = (r: Rand, n: number) => Math.floor(r() * n);

// ------------------------------------------------------------------------------------------------ mutations

type Kind = 'flip' | 'truncate' | 'insert' | 'header';
const KINDS: Kind[] = ['flip', 'truncate', 'insert', 'header'];

/** Bit flips, mostly in the first `hot` bytes (where the headers are). */
function flip(b: Uint8Array, r: Rand, hot = 64): Uint8Array {
  const out = b.slice();
  for (let k = 1 + int(r, 6); k > 0; k--) {
    const at = r() < 0.6 ? int(r, Math.min(hot, out.length)) : int(r, out.length);
    out[at] = out[at]! ^ (1 << int(r, 8));
  }
  return out;
}

function truncate(b: Uint8Array, r: Rand): Uint8Array {
  return b.slice(0, r() < 0.5 ? int(r, Math.min(b.length, 80)) : int(r, b.length));
}

function insert(b: Uint8Array, r: Rand, hot = 64): Uint8Array {
  const at = r() < 0.6 ? int(r, Math.min(hot, b.length)) : int(r, b.length);
  const extra = Uint8Array.from({ length: 1 + int(r, 16) }, () => int(r, 256));
  return new Uint8Array([...b.subarray(0, at), ...extra, ...b.subarray(at)]);
}

/** Numbers a hostile header field is set to. */
const EXTREMES = [0, 1, 2, 3, 27, 29, 255, 256, 65535, 50000, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1];
const extreme = (r: Rand, max = 2 ** 32 - 1) => (r() < 0.8 ? pick(r, EXTREMES) : int(r, 2 ** 32)) % (max + 1);

function setU32(b: Uint8Array, at: number, v: number, little: boolean): Uint8Array {
  const out = b.slice();
  if (at + 4 <= out.length) new DataView(out.buffer).setUint32(at, v, little);
  return out;
}

function setU16(b: Uint8Array, at: number, v: number, little: boolean): Uint8Array {
  const out = b.slice();
  if (at + 2 <= out.length) new DataView(out.buffer).setUint16(at, v & 0xffff, little);
  return out;
}

/** IDX: a dim, the element type or the rank. */
function idxHeader(b: Uint8Array, r: Rand): Uint8Array {
  const rank = b[3]!;
  const what = int(r, 4);
  if (what === 0) return Uint8Array.from(b, (x, i) => (i === 2 ? pick(r, [8, 9, 0xb, 0xc, 0xd, 0xe, int(r, 256)]) : x));
  if (what === 1) return Uint8Array.from(b, (x, i) => (i === 3 ? pick(r, [0, 1, 2, 4, 255, int(r, 256)]) : x));
  return setU32(b, 4 + 4 * int(r, rank), extreme(r), false);
}

/** npy: the header rebuilt with a hostile dtype, order or shape, or its length field overwritten. */
function npyHeader(b: Uint8Array, r: Rand, body: Uint8Array): Uint8Array {
  if (r() < 0.2) return setU16(b, 8, extreme(r, 65535), true);
  const descr = r() < 0.5 ? '|u1' : pick(r, ['<f4', '>f8', '<i8', '|b1', '<f2', '>u2', '<c8', '|O', '<U3', '<f16', '', "'"]);
  const shape = pick(r, ['(8, 28, 28)', '(0, 28, 28)', '(8, -1, 28)', '(100000000000000000000, 28, 28)', '(8, 28)', '(8, 28, 28, 1)', '(8, 1, 28, 28)',
    '(8,)', '()', '(1099511627776, 0)', '(4294967295, 28, 28)', '(8, 28, 28', '(8, 2.5, 28)', `(${extreme(r)}, 28, 28)`, `(8, ${extreme(r)}, ${extreme(r)})`]);
  const fortran = r() < 0.2 ? 'True' : 'False';
  return npyWith(`{'descr': '${descr}', 'fortran_order': ${fortran}, 'shape': ${shape}, }`, body);
}

/** npz: a declared size, compression method, name length or central-directory offset in the zip headers. */
function zipHeader(b: Uint8Array, r: Rand): Uint8Array {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const sigs: [number, number][] = [];
  for (let i = 0; i + 4 <= b.length; i++) {
    const s = v.getUint32(i, true);
    if (s === 0x04034b50 || s === 0x02014b50 || s === 0x06054b50) sigs.push([i, s]);
  }
  const [at, sig] = pick(r, sigs);
  const fields: [number, 2 | 4][] = sig === 0x04034b50 ? [[8, 2], [18, 4], [22, 4], [26, 2], [28, 2]]
    : sig === 0x02014b50 ? [[10, 2], [20, 4], [24, 4], [28, 2], [42, 4]] : [[10, 2], [12, 4], [16, 4]];
  const [off, size] = pick(r, fields);
  return size === 4 ? setU32(b, at + off, extreme(r), true) : setU16(b, at + off, extreme(r, 65535), true);
}

/** PNG: width, height, bit depth, color type or interlace in IHDR, its checksum fixed so decoders believe it. */
function pngHeader(b: Uint8Array, r: Rand): Uint8Array {
  const field = int(r, 5);
  const out = field < 2 ? setU32(b, 16 + 4 * field, extreme(r, 2 ** 31 - 1), false) : Uint8Array.from(b, (x, i) => (i === 22 + field ? int(r, 256) : x));
  return r() < 0.8 ? fixPngCrc(out) : out;
}

/** JPEG: the frame's size, precision or component count, or the length of some marker segment. */
function jpegHeader(b: Uint8Array, r: Rand): Uint8Array {
  const sof = b.findIndex((x, i) => x === 0xff && b[i + 1] === 0xc0);
  if (sof >= 0 && r() < 0.6) {
    const off = pick(r, [4, 5, 7, 9]);
    return off === 4 || off === 9 ? Uint8Array.from(b, (x, i) => (i === sof + off ? int(r, 256) : x)) : setU16(b, sof + off, extreme(r, 65535), false);
  }
  const markers: number[] = [];
  for (let i = 2; i + 3 < b.length; i++) if (b[i] === 0xff && b[i + 1]! >= 0xc0 && b[i + 1]! !== 0xff && b[i + 1]! !== 0xd8 && b[i + 1]! !== 0xd9 && (b[i + 1]! < 0xd0 || b[i + 1]! > 0xd7)) markers.push(i);
  return markers.length ? setU16(b, pick(r, markers) + 2, extreme(r, 65535), false) : b;
}

/** ONNX: a protobuf varint (a length, a dim, a type) overwritten with an extreme one, in the graph's first bytes. */
function onnxHeader(b: Uint8Array, r: Rand): Uint8Array {
  const at = int(r, Math.min(b.length, 65536));
  const v = pb.int(0, pick(r, [0n, 1n, 127n, 2n ** 31n, 2n ** 53n, 2n ** 63n - 1n, -1n, BigInt(int(r, 2 ** 31))])).slice(1);
  const out = b.slice();
  out.set(v.slice(0, out.length - at), at);
  return out;
}

// ------------------------------------------------------------------------------------------------ formats

interface Format {
  name: string;
  /** Writes mutation `k` (of the kind given) under `dir`; returns the CLI arguments that read it. */
  write(dir: string, kind: Kind, r: Rand): string[];
  /** Reads what `args` names the way the CLI command does, in process. */
  read(args: string[]): Promise<void>;
}

let model: Model;
async function readData(args: string[]): Promise<void> {
  const input = model.graph.inputs[0]!;
  const ds = openDataset(args[3]!, preprocessFor(model, {}).spec).forInput(input.type?.shape ?? []);
  for await (const batch of ds.batches(64)) assert.ok(batch.x.dims[0]! > 0);
}

function readModel(args: string[]): Promise<void> {
  const m = loadModel(args[1]!);
  assertRunnableOps(m);
  inspectModel(m, staticInputShapes(m, parseInputShapes(undefined, m)));
  return Promise.resolve();
}

const evalArgs = (spec: string) => ['eval', FIXTURE_MODEL, '--data', spec];

function generic(kind: Kind, b: Uint8Array, r: Rand, header: (b: Uint8Array, r: Rand) => Uint8Array, hot?: number): Uint8Array {
  if (kind === 'flip') return flip(b, r, hot);
  if (kind === 'truncate') return truncate(b, r);
  if (kind === 'insert') return insert(b, r, hot);
  return header(b, r);
}

function formats(): Format[] {
  const images = readIdx(join(DEMO, 't10k-images-idx3-ubyte.gz'));
  const labels = readIdx(join(DEMO, 't10k-labels-idx1-ubyte.gz'));
  const px = (images.data as Uint8Array).slice(0, N * 784);
  const ys = Array.from((labels.data as Uint8Array).slice(0, N));
  const idxImages = idxBytes([N, 28, 28], px);
  const idxLabels = idxBytes([N], ys);
  const npyX = npyBytes('|u1', [N, 28, 28], px);
  const npyY = npyBytes('<i8', [N], ys);
  const body = npyX.subarray(npyX.length - px.length);
  const pngs = Array.from({ length: N }, (_, i) => pngBytes(28, 28, 1, px.subarray(i * 784, (i + 1) * 784)));
  const jpgs = Array.from({ length: N }, (_, i) => jpegBytes(28, 28, Uint8Array.from({ length: 784 * 3 }, (_, k) => px[i * 784 + Math.floor(k / 3)]!), 90));
  const onnx = new Uint8Array(readFileSync(FIXTURE_MODEL));
  const idx = (gz: boolean): Format => ({
    name: gz ? 'idx.gz' : 'idx',
    write(dir, kind, r) {
      const ext = gz ? '.gz' : '';
      const target = r() < 0.25 ? 'labels' : 'images';
      // gzipped: header overwrites go into the IDX inside, the other mutations hit the compressed bytes
      const mutate = (b: Uint8Array) => {
        if (kind === 'header') return gz ? gzipSync(idxHeader(b, r)) : idxHeader(b, r);
        return generic(kind, gz ? gzipSync(b) : b, r, idxHeader, 32);
      };
      for (const [which, b, rank] of [['images', idxImages, 3], ['labels', idxLabels, 1]] as const) {
        writeFileSync(join(dir, `t10k-${which}-idx${rank}-ubyte${ext}`), which === target ? mutate(b) : gz ? gzipSync(b) : b);
      }
      return evalArgs(`idx:${join(dir, `t10k-images-idx3-ubyte${ext}`)}`);
    },
    read: readData,
  });
  const folder = (ext: 'png' | 'jpg', files: Uint8Array[], header: (b: Uint8Array, r: Rand) => Uint8Array): Format => ({
    name: ext,
    write(dir, kind, r) {
      const bad = int(r, N);
      files.forEach((f, i) => {
        mkdirSync(join(dir, `c${ys[i]}`), { recursive: true });
        writeFileSync(join(dir, `c${ys[i]}`, `${i}.${ext}`), i === bad ? generic(kind, f, r, header, 40) : f);
      });
      return evalArgs(`folder:${dir}`);
    },
    read: readData,
  });
  return [
    {
      name: 'onnx',
      write(dir, kind, r) {
        writeFileSync(join(dir, 'model.onnx'), generic(kind, onnx, r, onnxHeader, 65536));
        return ['inspect', join(dir, 'model.onnx')];
      },
      read: readModel,
    },
    idx(false),
    idx(true),
    {
      name: 'npy',
      write(dir, kind, r) {
        const labelsToo = r() < 0.25;
        const x = !labelsToo ? generic(kind, npyX, r, (b, rr) => npyHeader(b, rr, body), 128) : npyX;
        const y = labelsToo ? generic(kind, npyY, r, (b, rr) => npyHeader(b, rr, npyY.subarray(npyY.length - 8 * N)), 128) : npyY;
        writeFileSync(join(dir, 'x.npy'), x);
        writeFileSync(join(dir, 'y.npy'), y);
        return evalArgs(`npy:${join(dir, 'x.npy')},${join(dir, 'y.npy')}`);
      },
      read: readData,
    },
    {
      name: 'npz',
      write(dir, kind, r) {
        // a header overwrite hits either the zip's headers or the npy header of a member
        const x = kind === 'header' && r() < 0.4 ? npyHeader(npyX, r, body) : npyX;
        const zip = zipSync({ 'x.npy': [x, { level: r() < 0.5 ? 0 : 6 }], 'y.npy': npyY });
        writeFileSync(join(dir, 'd.npz'), x !== npyX ? zip : generic(kind, zip, r, zipHeader, 160));
        return evalArgs(join(dir, 'd.npz'));
      },
      read: readData,
    },
    folder('png', pngs, pngHeader),
    folder('jpg', jpgs, jpegHeader),
  ];
}

// ------------------------------------------------------------------------------------------------ the runs

/** In-process mutations per format and kind; how many of them also run through the CLI. */
const IN_PROCESS = 24;
const THROUGH_CLI = 1;

test('fuzz: mutated inputs of every format read as data or fail as a user error, never as a bug', { timeout: 300_000 }, async () => {
  model = loadModel(FIXTURE_MODEL);
  const root = tempDir('shears-fuzz-');
  const cli: { format: string; kind: Kind; args: string[] }[] = [];
  /** Per format: how many mutations read fine, and the distinct errors (file names and numbers left out). */
  const outcomes = new Map<string, { ok: number; errors: Set<string> }>();
  let case_ = 0;
  for (const f of formats()) {
    for (const kind of KINDS) {
      const r = rng(SEED * 1000 + case_++);
      for (let i = 0; i < IN_PROCESS; i++) {
        const dir = join(root, `${f.name}-${kind}-${i}`);
        mkdirSync(dir);
        const args = f.write(dir, kind, r);
        const tally = outcomes.get(f.name) ?? { ok: 0, errors: new Set<string>() };
        outcomes.set(f.name, tally);
        try {
          await f.read(args);
          tally.ok++;
        } catch (e) {
          if (!(e instanceof ShearsError)) {
            assert.fail(`${f.name} ${kind} #${i} (${dir}): not a user error but ${(e as Error).name}: ${(e as Error).message}\n${(e as Error).stack}`);
          }
          assert.ok(!e.message.includes('\n'), e.message);
          tally.errors.add(e.message.replace(/'[^']*'/g, 'F').replace(/\d+/g, 'N'));
        }
        if (i < THROUGH_CLI) cli.push({ format: f.name, kind, args });
        else rmSync(dir, { recursive: true });
      }
    }
  }
  // the mutations reach past the first check of every format: each gives several different errors
  for (const [name, t] of outcomes) assert.ok(t.errors.size >= 4, `${name}: ${t.ok} read, errors: ${[...t.errors].join(' | ')}`);
  assert.ok([...outcomes.values()].some((t) => t.ok > 0), 'some mutations still read');
  assert.ok(process.resourceUsage().maxRSS < 1.5 * 2 ** 20, `in-process peak ${process.resourceUsage().maxRSS >> 10} MiB`);

  // the real CLI, two at a time: exit 0 or 2, no hang, bounded memory
  const results: { c: (typeof cli)[number]; r: MeasuredRun }[] = [];
  const queue = [...cli];
  await Promise.all([0, 1].map(async () => {
    for (let c = queue.shift(); c; c = queue.shift()) results.push({ c, r: await runMeasured(c.args, 60_000) });
  }));
  for (const { c, r } of results) {
    const what = `${c.format} ${c.kind}: ${c.args.join(' ')}: ${describeRun(r)}`;
    assert.ok(r.code === 0 || r.code === 2, what);
    if (r.code === 2) assert.match(r.stderr.trim().split('\n').pop()!, /^shears: error: /, what);
    assert.ok(!/internal error|\n\s+at /.test(r.stderr), what);
    assert.ok(r.peakMiB < 1024, what);
  }
  rmSync(root, { recursive: true, force: true });
});
