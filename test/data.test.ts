/** Data formats: IDX, npy, npz, PNG/JPEG folders; spec strings; batching and seeded sampling; bad data errors. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ShearsError } from '../src/errors.js';
import { openDataset, parseDataSpec } from '../src/data/spec.js';
import { collect, idxBytes, jpegBytes, npyBytes, npzBytes, pngBytes, tempDir, writeIdx } from './data-helpers.js';

const seq = (n: number, f: (i: number) => number = (i) => i) => Array.from({ length: n }, (_, i) => f(i));

function idxSet(dir: string, split: string, n: number, gzip: boolean, labelsN = n) {
  const ext = gzip ? '.gz' : '';
  writeIdx(join(dir, `${split}-images-idx3-ubyte${ext}`), [n, 2, 3], seq(n * 6, (i) => (i * 7) % 256), gzip);
  writeIdx(join(dir, `${split}-labels-idx1-ubyte${ext}`), [labelsN], seq(labelsN, (i) => i % 10), gzip);
}

test('IDX: gzipped and plain files, labels found by the standard naming, values exact', async () => {
  const dir = tempDir();
  idxSet(dir, 't10k', 5, true);
  idxSet(dir, 'train', 7, false);
  for (const spec of [dir, `idx:${dir}`, `idx:${join(dir, 't10k-images-idx3-ubyte.gz')}`, join(dir, 't10k-images-idx3-ubyte.gz')]) {
    const ds = openDataset(spec);
    assert.equal(ds.size, 5, spec);
    assert.ok(ds.hasLabels);
    const [b] = await collect(ds.batches(10));
    assert.deepEqual(b!.x.dims, [5, 1, 2, 3]);
    assert.deepEqual([...(b!.x.data as Float32Array)], seq(30, (i) => (i * 7) % 256));
    assert.deepEqual([...b!.labels!], [0, 1, 2, 3, 4]);
  }
  const train = openDataset(`${dir}@train`);
  assert.equal(train.size, 7);
  assert.equal(parseDataSpec(`${dir}@train`).split, 'train');
  // labels named explicitly
  const ds = openDataset(`idx:${join(dir, 'train-images-idx3-ubyte')},${join(dir, 'train-labels-idx1-ubyte')}`);
  assert.equal(ds.size, 7);
  assert.throws(() => openDataset(`${dir}@nope`), (e: unknown) => e instanceof ShearsError && /no IDX split 'nope'/.test(e.message));
});

test('IDX: bad magic number, truncated file, labels/images count mismatch are clear errors', () => {
  const dir = tempDir();
  const bad = idxBytes([2, 2, 2], seq(8));
  bad[2] = 0x42;
  writeFileSync(join(dir, 'bad-images-idx3-ubyte'), bad);
  assert.throws(() => openDataset(`idx:${join(dir, 'bad-images-idx3-ubyte')}`), (e: unknown) => e instanceof ShearsError && /bad magic number 0x00004203/.test(e.message));
  const trunc = idxBytes([4, 2, 2], seq(16)).subarray(0, 20);
  writeFileSync(join(dir, 'tr-images-idx3-ubyte'), trunc);
  assert.throws(() => openDataset(`idx:${join(dir, 'tr-images-idx3-ubyte')}`), (e: unknown) => e instanceof ShearsError && /truncated/.test(e.message));
  idxSet(dir, 'mm', 4, true, 3);
  assert.throws(() => openDataset(`idx:${join(dir, 'mm-images-idx3-ubyte.gz')}`), (e: unknown) => e instanceof ShearsError && /labels\/images count mismatch.*4 images.*3 labels/.test(e.message));
  writeFileSync(join(dir, 'gz-images-idx3-ubyte.gz'), new Uint8Array([0x1f, 0x8b, 8, 0, 0, 0]));
  assert.throws(() => openDataset(`idx:${join(dir, 'gz-images-idx3-ubyte.gz')}`), (e: unknown) => e instanceof ShearsError && /corrupt or truncated gzip/.test(e.message));
});

test('npy: uint8 HW images, float NCHW images, int64 labels, big-endian floats, non-image tensors', async () => {
  const dir = tempDir();
  writeFileSync(join(dir, 'x.npy'), npyBytes('|u1', [3, 2, 2], seq(12, (i) => 10 * i)));
  writeFileSync(join(dir, 'y.npy'), npyBytes('<i8', [3], [2, 0, 1]));
  const a = openDataset(`npy:${join(dir, 'x.npy')},${join(dir, 'y.npy')}`);
  const [b] = await collect(a.batches(8));
  assert.deepEqual(b!.x.dims, [3, 1, 2, 2]);
  assert.deepEqual([...(b!.x.data as Float32Array)], seq(12, (i) => 10 * i));
  assert.deepEqual([...b!.labels!], [2, 0, 1]);
  // [N, C, H, W] float32: kept as CHW when preprocessed to nchw, transposed for nhwc
  const vals = seq(2 * 3 * 2 * 2, (i) => i / 4);
  writeFileSync(join(dir, 'c.npy'), npyBytes('<f4', [2, 3, 2, 2], vals));
  const [c] = await collect(openDataset(join(dir, 'c.npy')).batches(2));
  assert.deepEqual(c!.x.dims, [2, 3, 2, 2]);
  assert.deepEqual([...(c!.x.data as Float32Array)], vals);
  const [c2] = await collect(openDataset(join(dir, 'c.npy'), { layout: 'nhwc' }).batches(2));
  assert.deepEqual(c2!.x.dims, [2, 2, 2, 3]);
  assert.equal((c2!.x.data as Float32Array)[1], vals[4]); // h0 w0 channel 1
  // [N, 3, 4, 4]: 3 channels first rather than 4 (RGBA) last
  writeFileSync(join(dir, 'c4.npy'), npyBytes('<f8', [1, 3, 4, 4], seq(48)));
  const [c4] = await collect(openDataset(join(dir, 'c4.npy')).batches(1));
  assert.deepEqual(c4!.x.dims, [1, 3, 4, 4]);
  assert.deepEqual([...(c4!.x.data as Float32Array)], seq(48));
  writeFileSync(join(dir, 'be.npy'), npyBytes('>f4', [2, 2, 2], [1.5, -2, 3, 4, 5, 6, 7, 8.25]));
  const [d] = await collect(openDataset(join(dir, 'be.npy')).batches(2));
  assert.deepEqual([...(d!.x.data as Float32Array)], [1.5, -2, 3, 4, 5, 6, 7, 8.25]);
  writeFileSync(join(dir, 'v.npy'), npyBytes('<f8', [4, 5], seq(20, (i) => i - 3)));
  const [e] = await collect(openDataset(join(dir, 'v.npy'), { scale: 2 }).batches(3));
  assert.deepEqual(e!.x.dims, [3, 5]);
  assert.deepEqual([...(e!.x.data as Float32Array)], seq(15, (i) => 2 * (i - 3)));
  writeFileSync(join(dir, 'short.npy'), npyBytes('<f4', [4, 5], seq(20)).subarray(0, 100));
  assert.throws(() => openDataset(join(dir, 'short.npy')), (err: unknown) => err instanceof ShearsError && /truncated/.test(err.message));
  writeFileSync(join(dir, 'y4.npy'), npyBytes('<i8', [4], [0, 1, 2, 3]));
  assert.throws(() => openDataset(`npy:${join(dir, 'x.npy')},${join(dir, 'y4.npy')}`), (err: unknown) => err instanceof ShearsError && /count mismatch/.test(err.message));
});

test('npz: default and named keys, labels', async () => {
  const dir = tempDir();
  const x = npyBytes('|u1', [4, 3, 3], seq(36, (i) => 255 - i));
  writeFileSync(join(dir, 'd.npz'), npzBytes({ x, y: npyBytes('<i4', [4], [3, 1, 4, 1]) }));
  const ds = openDataset(join(dir, 'd.npz'), { scale: 1 / 255 });
  const [b] = await collect(ds.batches(4));
  assert.deepEqual(b!.x.dims, [4, 1, 3, 3]);
  assert.equal((b!.x.data as Float32Array)[5], Math.fround(250 / 255));
  assert.deepEqual([...b!.labels!], [3, 1, 4, 1]);
  writeFileSync(join(dir, 'k.npz'), npzBytes({ imgs: x, targets_v2: npyBytes('<i4', [4], [0, 0, 1, 1]) }));
  assert.throws(() => openDataset(join(dir, 'k.npz')), (e: unknown) => e instanceof ShearsError && /cannot tell which array/.test(e.message));
  const named = openDataset(`npz:${join(dir, 'k.npz')},imgs,targets_v2`);
  assert.deepEqual([...(await collect(named.batches(4)))[0]!.labels!], [0, 0, 1, 1]);
  writeFileSync(join(dir, 'z.npz'), new Uint8Array([1, 2, 3, 4]));
  assert.throws(() => openDataset(join(dir, 'z.npz')), (e: unknown) => e instanceof ShearsError && /not a valid \.npz/.test(e.message));
});

function imageFolder(): string {
  const dir = tempDir();
  for (const c of ['cat', 'dog']) mkdirSync(join(dir, c));
  // cat: a gray PNG and an RGB PNG; dog: a JPEG (quality 100) of a flat colour
  writeFileSync(join(dir, 'cat', 'a.png'), pngBytes(4, 3, 1, seq(12, (i) => 20 * i)));
  writeFileSync(join(dir, 'cat', 'b.png'), pngBytes(4, 3, 3, seq(36, (i) => (i % 3) * 100)));
  writeFileSync(join(dir, 'dog', 'c.jpg'), jpegBytes(4, 3, seq(36, (i) => [200, 100, 50][i % 3]!)));
  writeFileSync(join(dir, 'dog', 'notes.txt'), 'ignored');
  return dir;
}

test('image folder: class subfolders, PNG gray/RGB and JPEG, labels by sorted class name', async () => {
  const dir = imageFolder();
  for (const spec of [dir, `folder:${dir}`]) {
    const ds = openDataset(spec, { color: 'rgb' });
    assert.equal(ds.size, 3);
    assert.deepEqual(ds.classes, ['cat', 'dog']);
    const [b] = await collect(ds.batches(3));
    assert.deepEqual(b!.x.dims, [3, 3, 3, 4]);
    assert.deepEqual([...b!.labels!], [0, 0, 1]);
    const x = b!.x.data as Float32Array;
    // gray PNG replicated into R, G, B planes
    assert.deepEqual([...x.subarray(0, 12)], seq(12, (i) => 20 * i));
    assert.deepEqual([...x.subarray(12, 24)], seq(12, (i) => 20 * i));
    // RGB PNG: planes of 0, 100, 200
    assert.deepEqual([...x.subarray(36, 48)], seq(12, () => 0));
    assert.deepEqual([...x.subarray(48, 60)], seq(12, () => 100));
    assert.deepEqual([...x.subarray(60, 72)], seq(12, () => 200));
    // JPEG at quality 100 of a flat colour: within a few levels
    for (const [k, want] of [[0, 200], [1, 100], [2, 50]] as const) {
      for (const v of x.subarray(72 + k * 12, 72 + (k + 1) * 12)) assert.ok(Math.abs(v - want) <= 3, `jpeg channel ${k}: ${v} vs ${want}`);
    }
  }
  // gray output of the RGB PNG uses PIL's luma (0.299 R + 0.587 G + 0.114 B, fixed point): (0, 100, 200) -> 81
  const gray = openDataset(dir, { color: 'gray' });
  const [g] = await collect(gray.batches(3));
  assert.deepEqual(g!.x.dims, [3, 1, 3, 4]);
  assert.equal((g!.x.data as Float32Array)[12], (0 * 19595 + 100 * 38470 + 200 * 7471 + 0x8000) >> 16);
});

test('image folder: wrong image size, corrupt image and truncated PNG name the file', async () => {
  const dir = imageFolder();
  writeFileSync(join(dir, 'dog', 'big.png'), pngBytes(5, 3, 3, seq(45)));
  // gray and RGB images mixed without --color: channel counts differ
  await assert.rejects(collect(openDataset(dir).batches(8)), (e: unknown) => e instanceof ShearsError && /b\.png' is 3x3x4 after preprocessing, but '.*a\.png' is 1x3x4.*--color/.test(e.message));
  const ds = openDataset(dir, { color: 'rgb' });
  await assert.rejects(collect(ds.batches(8)), (e: unknown) => e instanceof ShearsError && /big\.png' is 3x3x5 after preprocessing, but '.*a\.png' is 3x3x4/.test(e.message));
  // against a model input: [N, 3, 3, 4] is fine for the first images, big.png is not
  const fitted = ds.forInput(['N', 3, 3, 4]);
  await assert.rejects(collect(fitted.batches(1)), (e: unknown) => e instanceof ShearsError && /big\.png' is 3x3x5 after preprocessing, the model input expects 3x3x4/.test(e.message));
  // a resize makes them match
  const [b] = await collect(openDataset(dir, { resize: [3, 4], color: 'rgb' }).batches(8));
  assert.deepEqual(b!.x.dims, [4, 3, 3, 4]);

  const dir2 = imageFolder();
  writeFileSync(join(dir2, 'cat', 'broken.png'), new Uint8Array([1, 2, 3, 4, 5]));
  await assert.rejects(collect(openDataset(dir2).batches(8)), (e: unknown) => e instanceof ShearsError && /corrupt image file '.*broken\.png'/.test(e.message));
  const dir3 = imageFolder();
  writeFileSync(join(dir3, 'dog', 'cut.png'), pngBytes(4, 3, 3, seq(36)).subarray(0, 40));
  await assert.rejects(collect(openDataset(dir3).batches(8)), (e: unknown) => e instanceof ShearsError && /corrupt image file '.*cut\.png'/.test(e.message));
  const dir4 = imageFolder();
  writeFileSync(join(dir4, 'dog', 'cut.jpg'), jpegBytes(4, 3, seq(36)).subarray(0, 60));
  await assert.rejects(collect(openDataset(dir4).batches(8)), (e: unknown) => e instanceof ShearsError && /corrupt image file '.*cut\.jpg'/.test(e.message));
});

test('flat folder of images has no labels; spec errors are clear', async () => {
  const dir = tempDir();
  writeFileSync(join(dir, 'one.png'), pngBytes(2, 2, 1, [0, 1, 2, 3]));
  writeFileSync(join(dir, 'two.png'), pngBytes(2, 2, 1, [4, 5, 6, 7]));
  const ds = openDataset(dir);
  assert.equal(ds.hasLabels, false);
  const [b] = await collect(ds.batches(2));
  assert.equal(b!.labels, undefined);
  assert.deepEqual([...(b!.x.data as Float32Array)], [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.throws(() => openDataset(join(dir, 'missing')), (e: unknown) => e instanceof ShearsError && /no such file/.test(e.message));
  assert.throws(() => openDataset(`npz:${join(dir, 'one.png')},a,b,c`), (e: unknown) => e instanceof ShearsError && /too many/.test(e.message));
  const empty = tempDir();
  assert.throws(() => openDataset(empty), (e: unknown) => e instanceof ShearsError && /neither IDX files nor PNG\/JPEG/.test(e.message));
});

test('batches: limit, seeded shuffle and sample() are deterministic and cover distinct samples', async () => {
  const dir = tempDir();
  idxSet(dir, 'train', 50, true);
  const ds = openDataset(dir);
  const all = await collect(ds.batches(16));
  assert.deepEqual(all.map((b) => b.x.dims[0]), [16, 16, 16, 2]);
  const lim = await collect(ds.batches(16, { limit: 20 }));
  assert.deepEqual(lim.map((b) => b.x.dims[0]), [16, 4]);
  const order = async (seed: number) => (await collect(ds.batches(7, { shuffle: true, seed }))).flatMap((b) => [...b.indices]);
  const s1 = await order(1);
  assert.deepEqual(s1, await order(1));
  assert.notDeepEqual(s1, await order(2));
  assert.deepEqual([...s1].sort((a, b) => a - b), seq(50));
  const sa = ds.sample(12, 3);
  const sb = ds.sample(12, 3);
  assert.equal(sa.size, 12);
  const idx = seq(12, (i) => sa.sourceIndex(i));
  assert.deepEqual(idx, seq(12, (i) => sb.sourceIndex(i)));
  assert.equal(new Set(idx).size, 12);
  assert.notDeepEqual(idx, seq(12, (i) => ds.sample(12, 4).sourceIndex(i)));
  // a sample's batches hold exactly the chosen samples (labels follow)
  const [b] = await collect(sa.batches(12));
  assert.deepEqual([...b!.labels!], idx.map((i) => i % 10));
  assert.deepEqual([...(b!.x.data as Float32Array).subarray(0, 6)], seq(6, (k) => ((idx[0]! * 6 + k) * 7) % 256));
});
