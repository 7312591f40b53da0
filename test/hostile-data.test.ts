/**
 * Hostile data files: IDX headers that claim more than the file holds, gzip and zip bombs, corrupt npy headers
 * and impossible shapes, npz that is not a zip, image folders with non-images, truncated images, a PNG that
 * claims 50000x50000, broken links and FIFOs. Each must be a one-line error (exit 2) within seconds and bounded
 * memory; the bombs and the PNG are run through the CLI, measured.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateRawSync, gzipSync } from 'node:zlib';
import { zipSync } from 'fflate';
import { ShearsError } from '../src/errors.js';
import { openDataset } from '../src/data/spec.js';
import { FIXTURE_MODEL } from './cli-helpers.js';
import { collect, idxBytes, jpegBytes, npyBytes, npzBytes, pngBytes, tempDir as newTempDir } from './data-helpers.js';
import { deflateBomb, describeRun, gzipBomb, npyWith, pngClaiming, runMeasured, userErrorLine, zipOf, type MeasuredRun } from './hostile-helpers.js';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
/** A fresh folder, removed when the tests end (some hold bombs). */
function tempDir(): string {
  const d = newTempDir('shears-hostile-data-');
  dirs.push(d);
  return d;
}

/** The error opening a data set and reading all of it gives: a one-line ShearsError. */
async function dataError(spec: string): Promise<string> {
  try {
    const ds = openDataset(spec);
    await collect(ds.batches(64));
  } catch (e) {
    assert.ok(e instanceof ShearsError, `expected a ShearsError, got ${(e as Error).name}: ${(e as Error).message}`);
    assert.ok(!e.message.includes('\n'));
    return e.message;
  }
  assert.fail(`'${spec}' was read without an error`);
}

/** `shears eval` of the fixture model on `spec`: must fail as a user error within seconds and bounded memory. */
async function evalFails(spec: string, message: RegExp, maxMiB = 400): Promise<MeasuredRun> {
  const r = await runMeasured(['eval', FIXTURE_MODEL, '--data', spec, '--limit', '4'], 30_000);
  assert.match(userErrorLine(r) ?? `not a user error: ${describeRun(r)}`, message);
  assert.ok(r.seconds < 15, `too slow: ${describeRun(r)}`);
  assert.ok(r.peakMiB < maxMiB, `too much memory: ${describeRun(r)}`);
  return r;
}

const u8Header = (shape: string, fortran = false) => `{'descr': '|u1', 'fortran_order': ${fortran ? 'True' : 'False'}, 'shape': ${shape}, }`;
const images = (n: number) => new Uint8Array(n * 784).map((_, i) => i % 251);

test('IDX: headers that claim more items or larger dims than the file holds, plain and gzipped', async () => {
  const dir = tempDir();
  const claim = (dims: number[]) => idxBytes(dims, []);
  const write = (name: string, b: Uint8Array) => {
    writeFileSync(join(dir, name), b);
    return join(dir, name);
  };
  const more = new Uint8Array([...claim([60000, 28, 28]), ...images(4)]);
  assert.match(await dataError(write('a-images-idx3-ubyte', more)), /'.*a-images-idx3-ubyte' is truncated: dims \[60000, 28, 28\] of ubyte need 47040016 bytes, the file has 3152/);
  assert.match(await dataError(write('b-images-idx3-ubyte.gz', gzipSync(more))), /b-images-idx3-ubyte\.gz' is truncated: dims \[60000, 28, 28\]/);
  // dims whose size is over the in-memory limit: refused from the header alone, before reading or inflating
  const huge = claim([0xffffffff, 0xffffffff, 0xffffffff]);
  assert.match(await dataError(write('c-images-idx3-ubyte', huge)), /claims dims \[4294967295, 4294967295, 4294967295\] of ubyte \(.* GiB\), more than the 2\.00 GiB an array read into memory may take/);
  assert.match(await dataError(write('d-images-idx3-ubyte.gz', gzipSync(huge))), /d-images-idx3-ubyte\.gz' claims dims \[4294967295/);
  assert.match(await dataError(write('e-images-idx3-ubyte', claim([100000, 1000, 1000]))), /claims dims \[100000, 1000, 1000\] of ubyte \(93\.13 GiB\)/);
  // 2^32 - 1 samples of no values: nothing to read, nothing to feed a model
  assert.match(await dataError(write('f-images-idx3-ubyte', claim([0xffffffff, 0, 0]))), /f-images-idx3-ubyte' holds samples of no values \(dims \[4294967295, 0, 0\]\)/);
  // 2^29 + 1 ints: just over 2 GiB as stored
  assert.match(await dataError(write('g-images-idx3-ubyte', idxBytes([2 ** 29 + 1], [], 0x0c))), /claims dims \[536870913\] of int \(2\.00 GiB\)/);
  // 2^30 signed bytes: 1 GiB as stored, 4 GiB once decoded to float32
  assert.match(await dataError(write('h-images-idx3-ubyte', idxBytes([2 ** 30], [], 0x09))), /claims dims \[1073741824\] of sbyte \(4\.00 GiB\)/);
});

test('IDX: a gzip bomb is inflated no further than its header describes', async () => {
  const dir = tempDir();
  const path = join(dir, 't10k-images-idx3-ubyte.gz');
  // 3152 bytes of IDX, then zeros: 1 GiB inflated from ~1 MiB
  writeFileSync(path, gzipBomb(new Uint8Array([...idxBytes([4, 28, 28], []), ...images(4)]), 16));
  await evalFails(path, /'.*t10k-images-idx3-ubyte\.gz' inflates to more than 3152 bytes, the size its IDX header describes \(dims \[4, 28, 28\] of ubyte\)/);
});

test('npy: corrupt header, negative and overflowing dims, Fortran order, unsupported dtypes, short data', async () => {
  const dir = tempDir();
  const cases: [string, Uint8Array, RegExp][] = [
    ['corrupt', npyWith("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 28"), /cannot read the \.npy header/],
    ['magic', new TextEncoder().encode('not numpy at all'), /is not a \.npy file \(bad magic\)/],
    ['negative', npyWith(u8Header('(4, -28, 28)')), /bad shape \(4, -28, 28\) in the \.npy header/],
    ['overflow', npyWith(u8Header('(100000000000000000000, 28, 28)')), /bad shape \(100000000000000000000, 28, 28\)/],
    ['fraction', npyWith(u8Header('(2.5, 28, 28)')), /bad shape/],
    ['fortran', npyWith(u8Header('(4, 28, 28)', true), images(4)), /is in Fortran order; save it C-ordered/],
    ['complex', npyWith("{'descr': '<c8', 'fortran_order': False, 'shape': (4, 28, 28), }", new Uint8Array(8 * 4 * 784)), /unsupported \.npy dtype '<c8'/],
    ['object', npyWith("{'descr': '|O', 'fortran_order': False, 'shape': (4,), }", new Uint8Array(32)), /unsupported \.npy dtype '\|O'/],
    ['unicode', npyWith("{'descr': '<U8', 'fortran_order': False, 'shape': (4,), }", new Uint8Array(128)), /unsupported \.npy dtype '<U8'/],
    ['short', npyWith(u8Header('(4, 28, 28)'), new Uint8Array(100)), /is truncated: shape \(4, 28, 28\) of \|u1 needs \d+ bytes, the file has \d+/],
    ['empty', npyWith(u8Header('(1099511627776, 0)')), /holds samples of no values \(dims \[1099511627776, 0\]\)/],
    ['rowbomb', npyWith("{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1000000000), }"), /claims samples of shape \(1000000000\) of <f8 each \(7\.45 GiB\), more than the 2\.00 GiB/],
    // format 2.0 header that claims a billion bytes of text
    ['longheader', new Uint8Array([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 2, 0, 0x00, 0xca, 0x9a, 0x3b, 0x7b]), /the \.npy header claims 1000000000 bytes, more than the 65536 shears reads/],
  ];
  for (const [name, bytes, message] of cases) {
    writeFileSync(join(dir, `${name}.npy`), bytes);
    assert.match(await dataError(join(dir, `${name}.npy`)), message, name);
  }
  // labels: the same rules (read whole, in memory)
  writeFileSync(join(dir, 'x.npy'), npyBytes('|u1', [4, 28, 28], images(4)));
  assert.match(await dataError(`npy:${join(dir, 'x.npy')},${join(dir, 'short.npy')}`), /short\.npy' is truncated/);
  // a FIFO named .npy would block the reader forever
  execFileSync('mkfifo', [join(dir, 'fifo.npy')]);
  await evalFails(join(dir, 'fifo.npy'), /'.*fifo\.npy' is neither a regular file nor a directory/);
});

test('npz: not a zip, missing keys, members whose declared or real size is over the limit (zip bombs)', async () => {
  const dir = tempDir();
  const x = npyBytes('|u1', [4, 28, 28], images(4));
  const write = (name: string, b: Uint8Array) => {
    writeFileSync(join(dir, name), b);
    return join(dir, name);
  };
  assert.match(await dataError(write('text.npz', new TextEncoder().encode('hello, not a zip'))), /text\.npz' is not a valid \.npz \(zip\) file: bad signature/);
  assert.match(await dataError(write('cut.npz', npzBytes({ x }).subarray(0, 200))), /cut\.npz.* (not a valid \.npz|truncated or corrupt)/);
  const ok = write('ok.npz', npzBytes({ x, y: npyBytes('<i8', [4], [1, 2, 3, 4]) }));
  assert.match(await dataError(`npz:${ok},nope`), /no array 'nope' \(arrays: x, y\)/);
  assert.match(await dataError(`npz:${ok},x,nope`), /no array 'nope' \(arrays: x, y\)/);
  assert.match(await dataError(write('k.npz', npzBytes({ imgs: x, targets: npyBytes('<i8', [4], [0, 1, 2, 3]) }))), /cannot tell which array holds the samples/);
  // a member that declares more than may be held in memory: refused before inflating
  const header = npyWith(u8Header('(4, 28, 28)'));
  assert.match(await dataError(write('declared.npz', zipOf([{ name: 'x.npy', data: deflateRawSync(x), method: 8, declaredSize: 0xf0000000 }]))), /declared\.npz:x\.npy' declares 4026531840 bytes, more than the 2\.00 GiB an array read into memory may take/);
  // a member that declares its true size but inflates to 64 MiB after the 3264 bytes its npy header describes
  const liar = zipOf([{ name: 'x.npy', data: deflateBomb(new Uint8Array([...header, ...images(4)]), 1), method: 8, declaredSize: header.length + 4 * 784 }]);
  assert.match(await dataError(write('liar.npz', liar)), /liar\.npz:x\.npy' inflates to more than the 3264 bytes its header describes/);
  // a stored (uncompressed) member longer than its header says
  assert.match(await dataError(write('stored.npz', zipOf([{ name: 'x.npy', data: new Uint8Array([...x, 1, 2, 3]), method: 0, declaredSize: x.length + 3 }]))), /stored\.npz:x\.npy' inflates to more than the 3264 bytes/);
  // arrays each under the limit but over it together; an unused member is never inflated, bomb or not
  const big = npyWith(u8Header('(1100000000,)'));
  assert.match(await dataError(`npz:${write('pair.npz', zipSync({ 'x.npy': big, 'y.npy': big }))},x,y`), /pair\.npz' claims arrays x\.npy, y\.npy together \(2\.05 GiB\), more than the 2\.00 GiB/);
  const junk = { name: 'junk.npy', data: deflateBomb(header, 1), method: 8, declaredSize: 2 ** 26 } as const;
  const y = npyBytes('<i8', [4], [1, 2, 3, 4]);
  const withJunk = write('junk.npz', zipOf([{ name: 'x.npy', data: x, method: 0, declaredSize: x.length }, junk, { name: 'y.npy', data: y, method: 0, declaredSize: y.length }]));
  assert.deepEqual([...(await collect(openDataset(withJunk).batches(4)))[0]!.labels!], [1, 2, 3, 4]);
  assert.match(await dataError(`npz:${withJunk},junk`), /junk\.npz:junk\.npy' inflates to more than the 3264 bytes its header describes/);
  // a member whose local header names another file than the directory does
  const renamed = zipOf([{ name: 'x.npy', data: x, method: 0, declaredSize: x.length }]);
  renamed.set(new TextEncoder().encode('q'), 30);
  assert.match(await dataError(write('renamed.npz', renamed)), /renamed\.npz': member 'x\.npy' is in the archive's directory but not in its data \(corrupt zip\)/);
  // 1 GiB declared honestly, run through the CLI: stops after the header's 3264 bytes
  const bomb = write('bomb.npz', zipOf([{ name: 'x.npy', data: deflateBomb(new Uint8Array([...header, ...images(4)]), 16), method: 8, declaredSize: 2 ** 30 }]));
  await evalFails(bomb, /bomb\.npz:x\.npy' inflates to more than the 3264 bytes its header describes/);
});

test('image folders: non-image files, truncated PNG and JPEG, a PNG claiming 50000x50000, broken links, FIFOs', async () => {
  const png = pngBytes(28, 28, 1, images(1));
  const jpg = jpegBytes(28, 28, new Uint8Array(784 * 3).fill(90));
  const folder = (files: Record<string, Uint8Array>) => {
    const dir = tempDir();
    mkdirSync(join(dir, 'a'));
    writeFileSync(join(dir, 'a', 'ok.png'), png);
    for (const [name, b] of Object.entries(files)) writeFileSync(join(dir, 'a', name), b);
    return dir;
  };
  assert.match(await dataError(folder({ 'text.png': new TextEncoder().encode('plain text') })), /corrupt image file '.*text\.png': neither PNG nor JPEG/);
  assert.match(await dataError(folder({ 'cut.png': png.subarray(0, png.length - 20) })), /corrupt image file '.*cut\.png'/);
  assert.match(await dataError(folder({ 'cut.jpg': jpg.subarray(0, jpg.length >> 1) })), /corrupt image file '.*cut\.jpg'/);
  // non-image names are ignored, whatever they hold
  const withNotes = folder({ 'notes.txt': new TextEncoder().encode('x'), 'data.bin': new Uint8Array(10) });
  assert.equal(openDataset(withNotes).size, 1);
  // JPEG whose frame header claims 50000x50000
  const big = jpg.slice();
  const sof = big.findIndex((b, i) => b === 0xff && big[i + 1] === 0xc0);
  new DataView(big.buffer).setUint16(sof + 5, 50000);
  new DataView(big.buffer).setUint16(sof + 7, 50000);
  assert.match(await dataError(folder({ 'big.jpg': big })), /image '.*big\.jpg' has more than the 100 megapixels shears decodes/);
  // PNG whose (checksummed) header claims 50000x50000: refused from the header, before any pixel is decoded
  const huge = folder({ 'huge.png': pngClaiming(png, 50000, 50000) });
  assert.match(await dataError(huge), /image '.*huge\.png' is 50000x50000 by its PNG header, more than the 100 megapixels shears decodes/);
  await evalFails(huge, /huge\.png' is 50000x50000 by its PNG header/);
  // a broken link and a FIFO named like images
  const links = folder({});
  symlinkSync(join(links, 'nowhere.png'), join(links, 'a', 'dangling.png'));
  await evalFails(links, /cannot read '.*dangling\.png': ENOENT/);
  const fifo = folder({});
  execFileSync('mkfifo', [join(fifo, 'a', 'pipe.png')]);
  await evalFails(fifo, /cannot read '.*pipe\.png': not a regular file/);
});
