/** Raw token files of uint16 / int32 ids (tokens:FILE.bin,dtype=...): the same windows as the same ids as bytes. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDataset } from '../src/data/spec.js';
import { writeTokens } from './lm-fixture.js';

test('tokens:FILE.bin,dtype=uint16|int32 reads little-endian ids: the same batches as the byte file; bad sizes refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-tokw-'));
  const { path, ids } = writeTokens(dir, 60);
  const u16 = join(dir, 't16.bin');
  const i32 = join(dir, 't32.bin');
  const b16 = Buffer.alloc(ids.length * 2);
  const b32 = Buffer.alloc(ids.length * 4);
  ids.forEach((v, i) => {
    b16.writeUInt16LE(v, 2 * i);
    b32.writeInt32LE(v, 4 * i);
  });
  writeFileSync(u16, b16);
  writeFileSync(i32, b32);
  const want = await openDataset(`tokens:${path},context=5`).readBatch([0, 7, 30]);
  for (const spec of [`tokens:${u16},dtype=uint16,context=5`, `tokens:${i32},context=5,dtype=int32`]) {
    const got = await openDataset(spec).readBatch([0, 7, 30]);
    assert.deepEqual([...(got.x.data as BigInt64Array)], [...(want.x.data as BigInt64Array)], spec);
    assert.deepEqual([...got.targets!], [...want.targets!], spec);
  }
  // ids above 255 are kept (a byte file could not hold them)
  const big = join(dir, 'big.bin');
  writeFileSync(big, Buffer.from(Uint16Array.from([1000, 2, 65535, 7]).buffer));
  const ds = openDataset(`tokens:${big},dtype=uint16,context=2`);
  assert.deepEqual([...((await ds.readBatch([0])).x.data as BigInt64Array)].map(Number), [1000, 2]);
  // a file that is not a whole number of ids, an unknown option
  writeFileSync(join(dir, 'odd.bin'), Buffer.alloc(5));
  assert.throws(() => openDataset(`tokens:${join(dir, 'odd.bin')},dtype=uint16`), /5 bytes, not a whole number of uint16 token ids/);
  assert.throws(() => openDataset(`tokens:${path},dtype=float32`), /not a token data option \(context=T, dtype=uint8\|uint16\|int32\)/);
});
