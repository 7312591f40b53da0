/**
 * Room for results (cli/room.ts): fine-tuning is refused before any work when the output's device has no room
 * for the result, and a result whose final write fails for lack of room is saved in the temporary folder, the
 * error naming the file, instead of being lost.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ShearsError } from '../src/errors.js';
import { checkRoom, freeBytes, saveResult, saveTexts } from '../src/cli/room.js';
import { writeFileAtomic } from '../src/fs/files.js';
import { initializerBytes, loadModel, saveModel } from '../src/onnx/io.js';
import { encodeModel } from '../src/onnx/codec.js';
import { FIXTURE_MODEL } from './cli-helpers.js';

test('checkRoom: refused (one line, sizes in MB) below the model\'s bytes plus margin; passes with room or when free space is unknown', () => {
  const model = loadModel(FIXTURE_MODEL);
  const bytes = initializerBytes(model);
  assert.ok(bytes > 0 && bytes <= encodeModel(model).byteLength, 'tensor bytes bound the file size from below');
  assert.throws(() => checkRoom('/x/out.onnx', bytes, 'the fine-tuned model', () => bytes), (e: unknown) =>
    e instanceof ShearsError && /no room for the fine-tuned model at '\/x\/out\.onnx': [\d.]+ MB free on its device, about [\d.]+ MB needed/.test(e.message) && !e.message.includes('\n'));
  checkRoom('/x/out.onnx', bytes, 'the fine-tuned model', () => 2 * bytes + (2 << 20));
  checkRoom('/x/out.onnx', bytes, 'the fine-tuned model', () => undefined);
  // The real device of the temporary folder reports a number.
  const free = freeBytes(join(tmpdir(), 'x.onnx'));
  assert.ok(free === undefined || (Number.isFinite(free) && free >= 0));
});

test('saveResult: a full device saves the model in a rescue folder and the error names it; other errors are not rescued', () => {
  const model = loadModel(FIXTURE_MODEL);
  const dir = mkdtempSync(join(tmpdir(), 'shears-room-'));
  const dest = join(dir, 'full', 'out.onnx');
  const full = (code: string) => (m: Parameters<typeof saveModel>[0], path: string) => {
    if (path === dest) throw new ShearsError(`cannot write '${dest}': no space left on the device; nothing was replaced`, { cause: Object.assign(new Error('ENOSPC'), { code }) });
    return saveModel(m, path);
  };
  const rescueDir = join(dir, 'rescue');
  let err: unknown;
  try {
    saveResult(model, dest, full('ENOSPC'), () => (rmSync(rescueDir, { force: true, recursive: true }), mkdtempSync(join(dir, 'rescue-'))));
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof ShearsError, 'still an error: the output asked for was not written');
  const m = /saved to '([^']+)' instead/.exec((err as Error).message);
  assert.ok(m, (err as Error).message);
  assert.ok(existsSync(m[1]!));
  assert.deepEqual(readFileSync(m[1]!), Buffer.from(encodeModel(model)), 'the rescued file is the model');
  // Permission and other errors: thrown as they are, nothing written elsewhere.
  let called = false;
  assert.throws(() => saveResult(model, dest, full('EACCES'), () => ((called = true), mkdtempSync(join(dir, 'never-')))), (e: unknown) => e instanceof ShearsError && !/instead/.test((e as Error).message));
  assert.equal(called, false);
  // With room, the model is written where asked.
  const ok = join(dir, 'ok.onnx');
  saveResult(model, ok);
  assert.deepEqual(readFileSync(ok), Buffer.from(encodeModel(model)));
  rmSync(dir, { recursive: true, force: true });
});

test('saveTexts (a sweep\'s report): a full device writes every text to one rescue folder, the error names it; others pass', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-room-'));
  const files = [{ path: join(dir, 'sweep.json'), text: '{"a":1}\n' }, { path: join(dir, 'sweep.html'), text: '<html></html>' }];
  const full = (code: string) => (path: string, text: string) => {
    if (path === files[1]!.path) throw new ShearsError(`cannot write '${path}': no space left on the device`, { cause: Object.assign(new Error(code), { code }) });
    writeFileAtomic(path, text);
  };
  let err: unknown;
  try {
    saveTexts(files, full('ENOSPC'), () => mkdtempSync(join(dir, 'rescue-')));
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof ShearsError);
  const m = /sweep\.json and sweep\.html were saved to '([^']+)' instead/.exec((err as Error).message);
  assert.ok(m, (err as Error).message);
  assert.equal(readFileSync(join(m[1]!, 'sweep.json'), 'utf8'), '{"a":1}\n');
  assert.equal(readFileSync(join(m[1]!, 'sweep.html'), 'utf8'), '<html></html>');
  let called = false;
  assert.throws(() => saveTexts(files, full('EACCES'), () => ((called = true), mkdtempSync(join(dir, 'never-')))), (e: unknown) => e instanceof ShearsError && !/instead/.test((e as Error).message));
  assert.equal(called, false);
  rmSync(dir, { recursive: true, force: true });
});
