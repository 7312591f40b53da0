/**
 * Times the studio page in Chromium (playwright-core, /usr/bin/chromium or $SHEARS_CHROMIUM): page load,
 * inspect of MODEL, and a structured prune to 50% MACs (no data: l2 importance, no repair), with the page's
 * default two wasm threads. Usage: node dist/bench/studio.js MODEL [RUNS]
 */
import { chromium } from 'playwright-core';
import { startStudio } from '../src/cli/studio.js';

const model = process.argv[2];
if (!model) throw new Error('usage: node dist/bench/studio.js MODEL [RUNS]');
const runs = Number(process.argv[3] ?? 3);
const server = await startStudio(0);
const browser = await chromium.launch({ executablePath: process.env['SHEARS_CHROMIUM'] ?? '/usr/bin/chromium', args: ['--no-sandbox'] });
const fmt = (xs: number[]) => `${xs.map((x) => x.toFixed(0)).join(', ')} ms (median ${[...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!.toFixed(0)})`;
const load: number[] = [], inspect: number[] = [], prune: number[] = [], pruneInPage: number[] = [];
try {
  for (let i = 0; i < runs; i++) {
    const page = await browser.newPage();
    let t = performance.now();
    await page.goto(server.url);
    await page.waitForSelector('body[data-ready]');
    load.push(performance.now() - t);
    t = performance.now();
    await page.setInputFiles('[data-testid=model-input]', model);
    await page.waitForSelector('body[data-inspected], [data-testid=error]:not(:empty)', { timeout: 300_000 });
    inspect.push(performance.now() - t);
    const err = await page.textContent('[data-testid=error]');
    if (err) throw new Error(err);
    await page.uncheck('[data-testid=measure-latency]');
    t = performance.now();
    await page.click('[data-testid=run-button]');
    await page.waitForSelector('body[data-done], [data-testid=error]:not(:empty)', { timeout: 600_000 });
    prune.push(performance.now() - t);
    const status = (await page.textContent('[data-testid=status]')) ?? '';
    pruneInPage.push(1000 * Number(/done in ([\d.]+) s/.exec(status)?.[1] ?? NaN));
    console.log(`run ${i + 1}: kept MACs ${await page.textContent('[data-testid=result-macs]')}; ${status}`);
    await page.close();
  }
  console.log(`page load (to ready): ${fmt(load)}\ninspect (pick to table shown): ${fmt(inspect)}\nstructured 50% MACs (click to result): ${fmt(prune)}\n  of which the pipeline in the worker: ${fmt(pruneInPage)}`);
} finally {
  await browser.close();
  await server.close();
}
