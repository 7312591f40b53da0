/** `shears studio`: serves the built page with the COOP/COEP headers and prints its URL; a busy port is exit 2 with one line. */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { STUDIO_ROOT } from '../src/cli/studio.js';
import { CLI } from './cli-helpers.js';

const built = existsSync(join(STUDIO_ROOT, 'index.html'));
if (!built) console.log(`# shears studio tests skipped: the page is not built (${STUDIO_ROOT}): npm run build`);

test('shears studio --port 0 prints its URL and serves the page, cross-origin isolated', { skip: !built && process.env['CI'] !== 'true' }, async () => {
  const child = spawn(process.execPath, [CLI, 'studio', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(out);
      });
      child.once('exit', (code) => reject(new Error(`exited ${code}`)));
    });
    const url = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(line)?.[1];
    assert.ok(url, line);
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('cross-origin-opener-policy'), 'same-origin');
    assert.equal(res.headers.get('cross-origin-embedder-policy'), 'require-corp');
    assert.match(await res.text(), /data-testid="model-input"/);
    const wasm = /assets\/[^"]+\.js/.exec(await (await fetch(url)).text());
    assert.ok(wasm, 'the page loads its own script');
    assert.equal((await fetch(`${url}nothing-here.js`)).status, 404);
  } finally {
    child.kill();
  }
});

test('shears studio on a busy port: exit 2 and one line', () => {
  const blocker = createServer();
  return new Promise<void>((resolve, reject) => {
    blocker.listen(0, '127.0.0.1', () => {
      try {
        const port = (blocker.address() as { port: number }).port;
        const r = spawnSync(process.execPath, [CLI, 'studio', '--port', String(port)], { encoding: 'utf8', timeout: 30_000 });
        assert.equal(r.status, 2, r.stderr);
        assert.equal(r.stderr, built ? `shears: error: port ${port} is in use: give another with --port N\n` : r.stderr);
        assert.equal(r.stderr.trim().split('\n').length, 1);
        resolve();
      } catch (e) {
        reject(e);
      } finally {
        blocker.close();
      }
    });
  });
});
