/**
 * Builders of hostile files (hand-made protobuf, zip and deflate bombs) and a CLI runner that measures what a
 * run costs, for the hostile-input and fuzz tests.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { constants, deflateRawSync, gzipSync } from 'node:zlib';
import { CLI } from './cli-helpers.js';

// ------------------------------------------------------------------------------------------------ CLI runs

export interface MeasuredRun {
  /** Exit code; null when the run was killed (a hang past the timeout). */
  code: number | null;
  stdout: string;
  stderr: string;
  seconds: number;
  /** Peak resident memory of the process, MiB. */
  peakMiB: number;
}

let hookFile: string | undefined;

/** A module preloaded into the CLI process that writes its peak RSS to the file $SHEARS_TEST_RSS at exit. */
function rssHook(): string {
  if (!hookFile) {
    hookFile = join(mkdtempSync(join(tmpdir(), 'shears-rss-')), 'hook.mjs');
    writeFileSync(hookFile, "import { writeFileSync } from 'node:fs';\nprocess.on('exit', () => writeFileSync(process.env.SHEARS_TEST_RSS, String(process.resourceUsage().maxRSS)));\n");
  }
  return hookFile;
}

/** Runs the built CLI in its own process, killed after `timeoutMs`; reports its time and peak memory. */
export function runMeasured(args: string[], timeoutMs = 30_000): Promise<MeasuredRun> {
  const dir = mkdtempSync(join(tmpdir(), 'shears-run-'));
  const rssFile = join(dir, 'rss');
  const t0 = performance.now();
  const child = spawn(process.execPath, ['--import', pathToFileURL(rssHook()).href, CLI, ...args], {
    env: { ...process.env, SHEARS_TEST_RSS: rssFile },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      let kib = 0;
      try {
        kib = Number(readFileSync(rssFile, 'utf8'));
      } catch {
        // killed before it could write: the timeout shows
      }
      rmSync(dir, { recursive: true, force: true });
      resolve({ code, stdout, stderr, seconds: (performance.now() - t0) / 1000, peakMiB: kib / 1024 });
    });
  });
}

/** A failure as a user error: exit 2 and one line 'shears: error: ...' after any warnings, no stack trace. */
export function userErrorLine(r: MeasuredRun): string | undefined {
  const lines = r.stderr.trim().split('\n').filter((l) => !l.startsWith('shears: warning:'));
  if (r.code !== 2 || lines.length !== 1 || !lines[0]!.startsWith('shears: error: ')) return undefined;
  return lines[0];
}

export function describeRun(r: MeasuredRun): string {
  return `exit ${r.code}, ${r.seconds.toFixed(1)} s, ${r.peakMiB.toFixed(0)} MiB, stderr: ${r.stderr.trim().slice(0, 400)}`;
}

// ------------------------------------------------------------------------------------------------ protobuf

const enc = new TextEncoder();

function varint(v: number | bigint): number[] {
  let x = BigInt.asUintN(64, BigInt(v));
  const out: number[] = [];
  while (x > 127n) {
    out.push(Number(x & 127n) | 128);
    x >>= 7n;
  }
  out.push(Number(x));
  return out;
}

/** Protobuf fields: a varint, or length-delimited bytes / string / nested message. */
export const pb = {
  int: (field: number, v: number | bigint): number[] => [...varint(field << 3), ...varint(v)],
  bytes: (field: number, b: ArrayLike<number>): number[] => [...varint((field << 3) | 2), ...varint(b.length), ...Array.from(b)],
  str: (field: number, s: string): number[] => pb.bytes(field, enc.encode(s)),
};

/** ValueInfoProto of a float tensor with the given dims. */
export function floatValueInfo(name: string, dims: (number | bigint)[]): number[] {
  const shape = dims.flatMap((d) => pb.bytes(1, pb.int(1, d)));
  return [...pb.str(1, name), ...pb.bytes(2, pb.bytes(1, [...pb.int(1, 1), ...pb.bytes(2, shape)]))];
}

export interface TensorSpec {
  dims?: (number | bigint)[];
  raw?: Uint8Array;
  floats?: number[];
  /** External data: key -> value (location, offset, length). */
  external?: Record<string, string>;
}

/** TensorProto of floats. */
function tensor(name: string, t: TensorSpec): number[] {
  const out = [...(t.dims ?? [4, 4]).flatMap((d) => pb.int(1, d)), ...pb.int(2, 1), ...pb.str(8, name)];
  if (t.floats) {
    const b = new Uint8Array(new Float32Array(t.floats).buffer);
    out.push(...pb.bytes(4, b)); // packed float_data
  }
  if (t.raw) out.push(...pb.bytes(9, t.raw));
  if (t.external) {
    for (const [key, value] of Object.entries(t.external)) out.push(...pb.bytes(13, [...pb.str(1, key), ...pb.str(2, value)]));
    out.push(...pb.int(14, 1));
  }
  return out;
}

function modelBytes(graph: ArrayLike<number>): Uint8Array {
  return Uint8Array.from([...pb.int(1, 8), ...pb.bytes(8, [...pb.str(1, ''), ...pb.int(2, 17)]), ...pb.bytes(7, graph)]);
}

/**
 * Y = X @ W: X float [1, 4] (or `inputDims`), W the given tensor; with `v`, also Z = X @ V (a second weight,
 * for external data that two tensors share).
 */
export function matmulModel(w: TensorSpec = { raw: new Uint8Array(64) }, inputDims: (number | bigint)[] = [1, 4], v?: TensorSpec): Uint8Array {
  const node = (weight: string, out: string) => pb.bytes(1, [...pb.str(1, 'X'), ...pb.str(1, weight), ...pb.str(2, out), ...pb.str(3, `mm_${weight}`), ...pb.str(4, 'MatMul')]);
  return modelBytes([
    ...node('W', 'Y'),
    ...(v ? node('V', 'Z') : []),
    ...pb.str(2, 'g'),
    ...pb.bytes(5, tensor('W', w)),
    ...(v ? pb.bytes(5, tensor('V', v)) : []),
    ...(v ? pb.bytes(12, floatValueInfo('Z', [1, 4])) : []),
    ...pb.bytes(11, floatValueInfo('X', inputDims)),
    ...pb.bytes(12, floatValueInfo('Y', [1, 4])),
  ]);
}

/** A chain of `n` one-input nodes X -> v0 -> v1 ... -> Y, written straight as bytes (fast for 10^6 nodes). */
export function chainModel(n: number, op: string): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    parts.push(Uint8Array.from(pb.bytes(1, [...pb.str(1, i === 0 ? 'X' : `v${i - 1}`), ...pb.str(2, i === n - 1 ? 'Y' : `v${i}`), ...pb.str(4, op)])));
  }
  parts.push(Uint8Array.from([...pb.str(2, 'chain'), ...pb.bytes(11, floatValueInfo('X', [1, 4])), ...pb.bytes(12, floatValueInfo('Y', [1, 4]))]));
  const graphLen = parts.reduce((s, p) => s + p.length, 0);
  const head = Uint8Array.from([...pb.int(1, 8), ...pb.bytes(8, [...pb.str(1, ''), ...pb.int(2, 17)]), ...varint((7 << 3) | 2), ...varint(graphLen)]);
  const out = new Uint8Array(head.length + graphLen);
  out.set(head);
  let at = head.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// ------------------------------------------------------------------------------------------------ PNG

const CRC_TABLE = Int32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});

/** A copy of PNG bytes with the checksum of their IHDR chunk (the first) recomputed, so a decoder believes it. */
export function fixPngCrc(png: Uint8Array): Uint8Array {
  const out = png.slice();
  if (out.length < 33) return out;
  let c = -1;
  for (let i = 12; i < 29; i++) c = CRC_TABLE[(c ^ out[i]!) & 255]! ^ (c >>> 8);
  new DataView(out.buffer).setInt32(29, ~c, false);
  return out;
}

/** A copy of PNG bytes whose IHDR claims `width` x `height`. */
export function pngClaiming(png: Uint8Array, width: number, height: number): Uint8Array {
  const out = png.slice();
  const v = new DataView(out.buffer);
  v.setUint32(16, width, false);
  v.setUint32(20, height, false);
  return fixPngCrc(out);
}

// ------------------------------------------------------------------------------------------------ bombs

const MiB = 1 << 20;

/**
 * A gzip file that starts with `prefix` and inflates to `copies` x 64 MiB (zeros after the prefix): gzip members
 * of 64 MiB each, concatenated (a file of ~64 KiB per member).
 */
export function gzipBomb(prefix: Uint8Array, copies: number): Uint8Array {
  const first = new Uint8Array(64 * MiB);
  first.set(prefix);
  const head = gzipSync(first, { level: 9 });
  const rest = gzipSync(new Uint8Array(64 * MiB), { level: 9 });
  const out = new Uint8Array(head.length + rest.length * (copies - 1));
  out.set(head);
  for (let k = 1; k < copies; k++) out.set(rest, head.length + rest.length * (k - 1));
  return out;
}

/**
 * A raw deflate stream that starts with `prefix` and inflates to `copies` x 64 MiB (zeros after the prefix): one
 * sync-flushed block run repeated (its back references only ever reach zeros), then an empty final block.
 */
export function deflateBomb(prefix: Uint8Array, copies: number): Uint8Array {
  const first = new Uint8Array(64 * MiB);
  first.set(prefix);
  const flush = { level: 9, finishFlush: constants.Z_SYNC_FLUSH };
  const head = deflateRawSync(first, flush);
  const rest = deflateRawSync(new Uint8Array(64 * MiB), flush);
  const end = deflateRawSync(new Uint8Array(0));
  const out = new Uint8Array(head.length + rest.length * (copies - 1) + end.length);
  out.set(head);
  for (let k = 1; k < copies; k++) out.set(rest, head.length + rest.length * (k - 1));
  out.set(end, out.length - end.length);
  return out;
}

export interface ZipMember {
  name: string;
  /** The member's bytes as stored: deflated when `method` is 8. */
  data: Uint8Array;
  method: 0 | 8;
  /** The uncompressed size the headers declare. */
  declaredSize: number;
}

/** A zip archive of members given as stored (no checksums: the readers under test do not check them). */
export function zipOf(members: ZipMember[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const m of members) {
    const n = enc.encode(m.name);
    const local = new DataView(new ArrayBuffer(30));
    local.setUint32(0, 0x04034b50, true);
    local.setUint16(4, 20, true);
    local.setUint16(8, m.method, true);
    local.setUint32(18, m.data.length, true);
    local.setUint32(22, m.declaredSize, true);
    local.setUint16(26, n.length, true);
    const dir = new DataView(new ArrayBuffer(46));
    dir.setUint32(0, 0x02014b50, true);
    dir.setUint16(4, 20, true);
    dir.setUint16(6, 20, true);
    dir.setUint16(10, m.method, true);
    dir.setUint32(20, m.data.length, true);
    dir.setUint32(24, m.declaredSize, true);
    dir.setUint16(28, n.length, true);
    dir.setUint32(42, offset, true);
    parts.push(new Uint8Array(local.buffer), n, m.data);
    central.push(new Uint8Array(dir.buffer), n);
    offset += 30 + n.length + m.data.length;
  }
  const cdSize = central.reduce((s, p) => s + p.length, 0);
  const eocd = new DataView(new ArrayBuffer(22));
  eocd.setUint32(0, 0x06054b50, true);
  eocd.setUint16(8, members.length, true);
  eocd.setUint16(10, members.length, true);
  eocd.setUint32(12, cdSize, true);
  eocd.setUint32(16, offset, true);
  const all = [...parts, ...central, new Uint8Array(eocd.buffer)];
  const out = new Uint8Array(all.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of all) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A .npy file with the given header text (padded as numpy pads it) and body. */
export function npyWith(header: string, body: Uint8Array = new Uint8Array(0)): Uint8Array {
  let h = header;
  h += ' '.repeat((64 - ((10 + h.length + 1) % 64)) % 64) + '\n';
  const out = new Uint8Array(10 + h.length + body.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, h.length & 0xff, h.length >> 8]);
  out.set(new TextEncoder().encode(h), 10);
  out.set(body, 10 + h.length);
  return out;
}
