/**
 * Decompression that stops at a size limit, so a decompression bomb is refused after inflating little more
 * than the size its file claims: gzip files (IDX) and zip archives (npz). The limit comes from the
 * decompressed file's own header, read first.
 */
import { Gunzip, Unzip, UnzipInflate, unzipSync } from 'fflate';
import { ShearsError } from '../errors.js';
import { MAX_ARRAY_BYTES } from './limits.js';
import { bytes } from '../units.js';

/** Compressed bytes pushed to a streaming decompressor at a time: one push inflates to at most ~1000x this. */
const STEP = 16384;

export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

function concat(chunks: Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(chunks.reduce((s, c) => s + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

const corruptGzip = (what: string, e: unknown) => new ShearsError(`'${what}' is a corrupt or truncated gzip file (${(e as Error).message})`);

/** The first `n` bytes that `gz` inflates to (all of them when it inflates to fewer), inflating little more. */
export function gunzipHead(gz: Uint8Array, n: number, what: string): Uint8Array {
  const chunks: Uint8Array[] = [];
  let got = 0;
  const stream = new Gunzip((chunk) => {
    chunks.push(chunk);
    got += chunk.length;
  });
  try {
    for (let at = 0; at < gz.length && got < n; at += STEP) stream.push(gz.subarray(at, at + STEP), at + STEP >= gz.length);
  } catch (e) {
    throw corruptGzip(what, e);
  }
  // All of it inflated to fewer bytes: inflate it again with zlib, which also checks that it is complete.
  if (got < n) return gunzipCapped(gz, n, what, 'though a first pass found fewer (corrupt gzip?)');
  return concat(chunks).subarray(0, n);
}

const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

/** CRC-32 (ISO-HDLC, as gzip stores it) of bytes. */
export function crc32(b: Uint8Array): number {
  let c = -1;
  for (let i = 0; i < b.length; i++) c = CRC_TABLE[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

const u32 = (b: Uint8Array, at: number) => (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;

class TooLarge extends Error {}

/**
 * All of `gz` inflated (checksum verified), refused once it inflates to more than `max` bytes; `why` says
 * where that size comes from. Each member of a multi-member file is checked against its own CRC-32 and size.
 */
export function gunzipCapped(gz: Uint8Array, max: number, what: string, why: string): Uint8Array {
  const cap = Math.max(1, max);
  const chunks: Uint8Array[] = [];
  let got = 0;
  /** Where each member starts: in the compressed bytes, and in the output. */
  const members = [{ inAt: 0, outAt: 0 }];
  const stream = new Gunzip((chunk) => {
    got += chunk.length;
    if (got > cap) throw new TooLarge();
    chunks.push(chunk);
  });
  stream.onmember = (inAt) => members.push({ inAt, outAt: got });
  try {
    if (gz.length === 0) throw new Error('unexpected end of file');
    for (let at = 0; at < gz.length; at += STEP) stream.push(gz.subarray(at, at + STEP), at + STEP >= gz.length);
  } catch (e) {
    if (e instanceof TooLarge) throw new ShearsError(`'${what}' inflates to more than ${max} bytes, ${why}`);
    throw corruptGzip(what, e);
  }
  const out = concat(chunks);
  members.forEach((m, k) => {
    const end = k + 1 < members.length ? members[k + 1]!.inAt : gz.length;
    const outEnd = k + 1 < members.length ? members[k + 1]!.outAt : out.length;
    const data = out.subarray(m.outAt, outEnd);
    if (end - m.inAt < 18 || crc32(data) !== u32(gz, end - 8) || data.length % 2 ** 32 !== u32(gz, end - 4)) {
      throw corruptGzip(what, new Error('incorrect data check'));
    }
  });
  return out;
}

/** A member of a zip archive: `limit` is the most bytes it may inflate to, given its first bytes. */
export interface MemberRule {
  /** Whether to inflate the member named so (the others are skipped). */
  keep(name: string): boolean;
  /** Bytes of a member's start that `limit` needs to see (it gets fewer when the member is shorter). */
  headBytes: number;
  /** The most bytes the member may inflate to; throws a ShearsError when its head is not acceptable. */
  limit(name: string, head: Uint8Array): number;
}

/** One member being inflated: its head is collected until its limit is known, then a buffer of that size. */
class Member {
  private chunks: Uint8Array[] = [];
  private got = 0;
  private buf: Uint8Array | undefined;
  done: Uint8Array | undefined;

  constructor(
    readonly name: string,
    private readonly what: string,
    private readonly rule: MemberRule,
  ) {}

  add(chunk: Uint8Array, final: boolean): void {
    if (!this.buf) {
      this.chunks.push(chunk);
      this.got += chunk.length;
      if (this.got < this.rule.headBytes && !final) return;
      const head = concat(this.chunks);
      this.chunks = [];
      const limit = this.rule.limit(this.name, head.subarray(0, this.rule.headBytes));
      this.check(this.got, limit);
      this.buf = new Uint8Array(limit);
      this.buf.set(head);
    } else {
      this.check(this.got + chunk.length, this.buf.length);
      this.buf.set(chunk, this.got);
      this.got += chunk.length;
    }
    if (final) this.done = this.buf.subarray(0, this.got);
  }

  private check(size: number, limit: number): void {
    if (size > limit) throw new ShearsError(`'${this.what}:${this.name}' inflates to more than the ${limit} bytes its header describes (corrupt member, or a zip bomb)`);
  }
}

const notZip = (what: string, why: string) => new ShearsError(`'${what}' is not a valid .npz (zip) file: ${why}`);

function checkZipSignature(zip: Uint8Array, what: string): void {
  const sig = zip.length >= 4 && zip[0] === 0x50 && zip[1] === 0x4b ? (zip[2]! << 8) | zip[3]! : 0;
  if (sig !== 0x0304 && sig !== 0x0506) throw notZip(what, 'bad signature');
}

/** The names of a zip archive's members, from its central directory (nothing is inflated). */
export function zipNames(zip: Uint8Array, what: string): string[] {
  checkZipSignature(zip, what);
  const names: string[] = [];
  try {
    unzipSync(zip, {
      filter: (f) => {
        names.push(f.name);
        return false;
      },
    });
  } catch (e) {
    throw notZip(what, (e as Error).message);
  }
  return names;
}

/** The members of a zip archive that `rule` keeps, each inflated piece by piece up to its limit. */
export function unzipCapped(zip: Uint8Array, what: string, rule: MemberRule): Map<string, Uint8Array> {
  checkZipSignature(zip, what);
  const members: Member[] = [];
  const unzip = new Unzip((file) => {
    if (!rule.keep(file.name)) return;
    if (file.originalSize !== undefined && file.originalSize > MAX_ARRAY_BYTES) {
      throw new ShearsError(`'${what}:${file.name}' declares ${file.originalSize} bytes, more than the ${bytes(MAX_ARRAY_BYTES)} an array read into memory may take`);
    }
    const m = new Member(file.name, what, rule);
    members.push(m);
    file.ondata = (err, chunk, final) => {
      if (err) throw err;
      m.add(chunk, final);
    };
    file.start();
  });
  unzip.register(UnzipInflate);
  try {
    for (let at = 0; at < zip.length; at += STEP) unzip.push(zip.subarray(at, at + STEP), at + STEP >= zip.length);
  } catch (e) {
    if (e instanceof ShearsError) throw e;
    throw notZip(what, (e as Error).message);
  }
  const out = new Map<string, Uint8Array>();
  for (const m of members) {
    if (!m.done) throw new ShearsError(`'${what}:${m.name}' is truncated or corrupt (its compressed data ends early)`);
    out.set(m.name, m.done);
  }
  return out;
}
