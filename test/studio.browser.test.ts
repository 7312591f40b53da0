/**
 * The studio page in a real browser: Debian's Chromium (/usr/bin/chromium, or $SHEARS_CHROMIUM) driven by
 * playwright-core (no browser download), the page served by `shears studio`'s server. Loads the bundled
 * ResNet-20, checks the inspection, the bad inputs (corrupt, truncated, unsupported op, no images, a corrupt
 * image: a message in data-testid=error and the page stays usable), cancel, and a structured 50% MAC prune with
 * lsq repair on demo images: the kept MACs shown equal the CLI's for the downloaded recipe, the downloaded model
 * is the very file `SHEARS_RUNTIME=web shears run` writes for it (one wasm thread on both sides) and scores the
 * top-1 shown when run in onnxruntime-node. No request leaves the local server. Screenshots of each state go to
 * .studio-artifacts/ (gitignored).
 *
 * Without Chromium (or without the built page, dist/studio) the tests are skipped with a message, unless
 * CI=true, where that is a failure.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { openDataset } from '../src/data/spec.js';
import { evaluate } from '../src/metrics/evaluate.js';
import { parseModelBytes } from '../src/onnx/parse.js';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { inspectModel } from '../src/analysis/inspect.js';
import { STUDIO_ROOT, startStudio, type StudioServer } from '../src/cli/studio.js';
import { CLI, FIXTURE_MODEL } from './cli-helpers.js';
import { unsupportedOpModel, writeDemoPngs } from './studio-fixtures.js';

const CHROMIUM = process.env['SHEARS_CHROMIUM'] ?? '/usr/bin/chromium';
const ARTEFACTS = fileURLToPath(new URL('../../.studio-artifacts/', import.meta.url));
const IMAGES = 200;

function skipReason(): string | undefined {
  const why = !existsSync(CHROMIUM)
    ? `no Chromium at ${CHROMIUM} (apt-get install -y chromium, or set SHEARS_CHROMIUM)`
    : !existsSync(join(STUDIO_ROOT, 'index.html')) ? `the studio page is not built (${STUDIO_ROOT}): npm run build` : undefined;
  if (why && process.env['CI'] === 'true') throw new Error(`studio browser tests cannot run on CI: ${why}`);
  if (why) console.log(`# studio browser tests skipped: ${why}`);
  return why;
}
const skip = skipReason();

describe('shears studio in Chromium', { skip, timeout: 900_000 }, () => {
  let server: StudioServer;
  let browser: Browser;
  let page: Page;
  let dir: string;
  const requests: string[] = [];
  const pageErrors: string[] = [];

  before(async () => {
    const { chromium } = await import('playwright-core');
    dir = mkdtempSync(join(tmpdir(), 'shears-studio-'));
    mkdirSync(ARTEFACTS, { recursive: true });
    server = await startStudio(0);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  });
  after(async () => {
    await browser?.close();
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A fresh tab on the page (`query`: e.g. '?threads=1'), watching its requests and uncaught errors. */
  async function open(query = ''): Promise<number> {
    await page?.close();
    page = await browser.newPage({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
    page.on('request', (r) => requests.push(r.url()));
    page.on('pageerror', (e) => pageErrors.push(e.message));
    const t0 = performance.now();
    await page.goto(server.url + query);
    await page.waitForSelector('body[data-ready]');
    return performance.now() - t0;
  }
  const text = async (id: string) => ((await page.textContent(`[data-testid=${id}]`)) ?? '').trim();
  const shot = (name: string) => page.screenshot({ path: join(ARTEFACTS, `${name}.png`), fullPage: true });
  async function pickModel(file: string): Promise<void> {
    await page.setInputFiles('[data-testid=model-input]', file);
    await page.waitForSelector('body[data-inspected], [data-testid=error]:not(:empty)', { timeout: 60_000 });
  }
  async function download(id: string, to: string): Promise<string> {
    const [d] = await Promise.all([page.waitForEvent('download'), page.click(`[data-testid=${id}]`)]);
    const path = join(dir, to);
    await d.saveAs(path);
    return path;
  }

  test('the page loads cross-origin isolated (wasm threads) with the COOP/COEP headers, and inspects the bundled ResNet-20', async () => {
    const res = await fetch(server.url);
    assert.equal(res.headers.get('cross-origin-opener-policy'), 'same-origin');
    assert.equal(res.headers.get('cross-origin-embedder-policy'), 'require-corp');
    assert.equal((await fetch(`${server.url}../../etc/passwd`)).status, 404);
    const loadMs = await open();
    console.log(`# page load ${loadMs.toFixed(0)} ms`);
    assert.equal(await page.evaluate('crossOriginIsolated'), true);
    assert.match(await text('engine'), /2 threads/);
    await shot('1-ready');
    const t0 = performance.now();
    await pickModel(FIXTURE_MODEL);
    console.log(`# inspect of fmnist_resnet20 ${(performance.now() - t0).toFixed(0)} ms`);
    assert.equal(await text('error'), '');
    const summary = await text('summary');
    assert.match(summary, /MACs\s+31,021,952/);
    assert.match(summary, /params\s+271,402/);
    assert.equal(await page.locator('[data-testid=layers] tbody tr').count(), 22, 'the 21 Convs and the Gemm');
    assert.ok(await page.locator('[data-testid=layers] td.bar span').count() === 22, 'a MAC bar per layer');
    const groups = await page.locator('[data-testid=groups] tbody tr').count();
    assert.ok(groups >= 10, `dependency groups listed: ${groups}`);
    assert.match(await text('frozen'), /model output/);
    await shot('2-inspected');
  });

  test('dropping the model file on the page inspects it', async () => {
    await open();
    const b64 = readFileSync(FIXTURE_MODEL).toString('base64');
    const dt = await page.evaluateHandle(`(() => {
      const bin = atob(${JSON.stringify(b64)});
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], 'dropped.onnx'));
      return dt;
    })()`);
    await page.dispatchEvent('[data-testid=drop]', 'drop', { dataTransfer: dt });
    await page.waitForSelector('body[data-inspected], [data-testid=error]:not(:empty)', { timeout: 60_000 });
    assert.equal(await text('error'), '');
    assert.match(await text('summary'), /MACs\s+31,021,952/);
    assert.match((await page.textContent('#model-title')) ?? '', /dropped\.onnx/);
  });

  test('bad input: a message in data-testid=error, and the page stays usable', async () => {
    await open();
    const bytes = readFileSync(FIXTURE_MODEL);
    const cases: [string, Uint8Array, RegExp][] = [
      ['corrupt.onnx', new Uint8Array(4096).map((_, i) => (i * 7919) & 0xff), /corrupt\.onnx.*not a valid ONNX model/],
      ['truncated.onnx', bytes.subarray(0, Math.floor(bytes.length / 2)), /truncated\.onnx.*(truncated|not a valid ONNX model|premature|end)/i],
      ['custom-op.onnx', unsupportedOpModel(), /FancyActivation/],
    ];
    for (const [name, data, expected] of cases) {
      const file = join(dir, name);
      writeFileSync(file, data);
      await pickModel(file);
      const message = await text('error');
      console.log(`# ${name}: ${message}`);
      assert.match(message, expected);
      assert.equal(await page.locator('body[data-inspected]').count(), 0);
      assert.equal(await page.isEnabled('[data-testid=model-input]'), true);
      if (name === 'custom-op.onnx') await shot('3-error-unsupported-op');
    }
    // a folder without images, then a corrupt image in a run
    const notImages = join(dir, 'not-images');
    mkdirSync(join(notImages, 'a'), { recursive: true });
    writeFileSync(join(notImages, 'a', 'notes.txt'), 'hello');
    await pickModel(FIXTURE_MODEL);
    assert.equal(await text('error'), '', 'the good model after the bad ones');
    await page.setInputFiles('[data-testid=data-input]', notImages);
    assert.match(await text('error'), /no images/);
    const badImages = join(dir, 'bad-images');
    writeDemoPngs(badImages, 20);
    writeFileSync(join(badImages, '3', 'zz-truncated.png'), readFileSync(join(badImages, '3', readdirSync(join(badImages, '3'))[0]!)).subarray(0, 60));
    await page.setInputFiles('[data-testid=data-input]', badImages);
    await page.click('[data-testid=run-button]');
    await page.waitForSelector('[data-testid=error]:not(:empty)', { timeout: 120_000 });
    console.log(`# truncated image: ${await text('error')}`);
    assert.match(await text('error'), /zz-truncated\.png/);
    assert.equal(await page.isEnabled('[data-testid=run-button]'), true);
  });

  test('a model with external data: chosen with its data file it is inspected; alone it is a message', async () => {
    await open();
    const ext = join(dir, 'ext');
    mkdirSync(ext, { recursive: true });
    const file = join(ext, 'resnet20-ext.onnx');
    saveModel(loadModel(FIXTURE_MODEL), file, { externalData: true });
    assert.ok(existsSync(`${file}.data`));
    await page.setInputFiles('[data-testid=model-input]', [file, `${file}.data`]);
    await page.waitForSelector('body[data-inspected], [data-testid=error]:not(:empty)', { timeout: 60_000 });
    assert.equal(await text('error'), '');
    assert.match(await text('summary'), /MACs\s+31,021,952/);
    await pickModel(file);
    console.log(`# external data missing: ${await text('error')}`);
    assert.match(await text('error'), /resnet20-ext\.onnx\.data.*choose that file together with the model/);
  });

  test('cancel terminates the worker; the UI stays responsive during a run', async () => {
    await open();
    await pickModel(FIXTURE_MODEL);
    const imgs = join(dir, 'imgs');
    if (!existsSync(imgs)) writeDemoPngs(imgs, IMAGES);
    await page.setInputFiles('[data-testid=data-input]', imgs);
    await page.fill('#pp-mean', '0.2860');
    await page.fill('#pp-std', '0.3530');
    // the UI thread's long tasks (over 50 ms) while the worker works: its own work, not the machine's load
    // (page code as strings: this project's TypeScript has no DOM types)
    await page.evaluate(`window.longTasks = [];
      new PerformanceObserver((l) => { for (const e of l.getEntries()) window.longTasks.push(Math.round(e.duration)); }).observe({ type: 'longtask' });`);
    await page.click('[data-testid=run-button]');
    await page.waitForFunction(`document.querySelector('[data-testid=progress]').value > 0`, null, { timeout: 60_000 });
    await page.waitForTimeout(1500);
    const t0 = performance.now();
    assert.equal(await page.evaluate('1 + 1'), 2);
    const roundTrip = performance.now() - t0;
    await shot('4-running');
    assert.equal(await page.isEnabled('[data-testid=cancel-button]'), true);
    await page.click('[data-testid=cancel-button]');
    assert.equal(await text('status'), 'cancelled');
    assert.equal(await page.isEnabled('[data-testid=run-button]'), true);
    const longTasks = (await page.evaluate('window.longTasks')) as number[];
    console.log(`# during the run: UI thread long tasks [${longTasks.join(', ')}] ms; a script round trip ${roundTrip.toFixed(0)} ms`);
    assert.ok(Math.max(0, ...longTasks) < 1000, `the UI thread was busy for ${Math.max(...longTasks)} ms at once`);
    assert.ok(roundTrip < 3000, `the page answered a script after ${roundTrip} ms`);
    await shot('5-cancelled');
  });

  test('structured 50% MACs + lsq repair in the page: the CLI replays the downloaded recipe to the same numbers and the same bytes', async () => {
    // one wasm thread: the CLI's onnxruntime-web in Node runs one, and threaded kernels round differently
    await open('?threads=1');
    await pickModel(FIXTURE_MODEL);
    const imgs = join(dir, 'imgs');
    if (!existsSync(imgs)) writeDemoPngs(imgs, IMAGES);
    await page.setInputFiles('[data-testid=data-input]', imgs);
    assert.match(await text('data-summary'), new RegExp(`${IMAGES} images, 10 classes`));
    await page.fill('#pp-mean', '0.2860');
    await page.fill('#pp-std', '0.3530');
    await page.check('[data-testid=evidence]');
    await page.selectOption('[data-testid=mode]', 'structured');
    await page.selectOption('[data-testid=target-kind]', 'macs');
    await page.fill('[data-testid=target-value]', '0.5');
    const t0 = performance.now();
    await page.click('[data-testid=run-button]');
    await page.waitForSelector('body[data-done], [data-testid=error]:not(:empty)', { timeout: 600_000 });
    assert.equal(await text('error'), '');
    console.log(`# structured 50% + lsq (${IMAGES} images) in the page: ${((performance.now() - t0) / 1000).toFixed(1)} s; ${await text('status')}`);
    await shot('6-result');
    await page.screenshot({ path: join(ARTEFACTS, '6-result-viewport.png') }); // docs/studio.png is one of these
    const macs = await text('result-macs');
    const top1 = await text('result-top1');
    assert.match(macs, /^0\.\d{3}$/);
    assert.match(await text('result-latency'), /^\d+\.\d\d ms$/);
    assert.match(top1, /^\d+\.\d\d%$/);
    // the evidence report's plots (chart.js from the bundle) in the page
    const frame = page.frameLocator('[data-testid=report-frame]');
    await frame.locator('canvas').first().waitFor({ timeout: 30_000 });
    assert.ok((await frame.locator('canvas').count()) >= 2, 'the plots of report --html');
    await download('download-report', 'report.html');
    const modelFile = await download('download-model', 'page.onnx');
    const recipeFile = await download('download-recipe', 'recipe.yaml');
    const planFile = await download('download-plan', 'plan.json');
    assert.ok(JSON.parse(readFileSync(planFile, 'utf8')), 'the plan is JSON');
    // the CLI, on the recipe the page offers, with the same images
    const out = join(dir, 'cli-web.onnx');
    const r = spawnSync(process.execPath, [CLI, 'run', recipeFile, FIXTURE_MODEL, '-o', out, '--data', `calib=${imgs}`, '--data', `data=${imgs}`, '--json'], {
      encoding: 'utf8', timeout: 600_000, env: { ...process.env, SHEARS_RUNTIME: 'web' },
    });
    assert.equal(r.status, 0, r.stderr);
    const cli = JSON.parse(r.stdout) as { macsRatio: number; scores?: { model: { accuracy?: { top1: number } } }[] };
    assert.ok(readFileSync(recipeFile, 'utf8').includes('kind: report'));
    assert.equal(macs, cli.macsRatio.toFixed(3), 'kept MACs: page vs CLI');
    assert.equal(top1, `${(100 * cli.scores!.at(-1)!.model.accuracy!.top1).toFixed(2)}%`, 'top-1: page vs CLI');
    const pageBytes = readFileSync(modelFile);
    assert.ok(pageBytes.equals(readFileSync(out)), 'the downloaded model is the CLI\'s file, byte for byte');
    // the download in onnxruntime-node (the default runtime here): its MACs, and the top-1 the page showed
    const model = parseModelBytes(new Uint8Array(pageBytes));
    const dense = parseModelBytes(new Uint8Array(readFileSync(FIXTURE_MODEL)));
    const shapes = { input: [1, 1, 28, 28] };
    assert.equal((inspectModel(model, shapes).macs / inspectModel(dense, shapes).macs).toFixed(3), macs);
    const ds = openDataset(imgs, { scale: 1 / 255, mean: [0.286], std: [0.353] });
    const ev = await evaluate(model, ds, {});
    const shown = Number(top1.replace('%', '')) / 100;
    console.log(`# onnxruntime-node top-1 of the download ${(100 * ev.accuracy!.top1).toFixed(2)}%, page ${top1}`);
    assert.ok(Math.abs(ev.accuracy!.top1 - shown) <= 1 / IMAGES + 1e-9, `top-1 in onnxruntime-node ${ev.accuracy!.top1} vs the page's ${top1}`);
  });

  test('structured 50% MACs without data, default threads: the download is the native CLI\'s file for the recipe, byte for byte', async () => {
    // no onnxruntime arithmetic decides these weights (l2 importance, no repair): the page's two wasm threads and
    // the CLI's onnxruntime-node give the same file
    await open();
    await pickModel(FIXTURE_MODEL);
    await page.uncheck('[data-testid=measure-latency]');
    await page.selectOption('[data-testid=mode]', 'structured');
    await page.selectOption('[data-testid=target-kind]', 'macs');
    await page.fill('[data-testid=target-value]', '0.5');
    await page.evaluate(`delete document.body.dataset.done`);
    await page.click('[data-testid=run-button]');
    await page.waitForSelector('body[data-done], [data-testid=error]:not(:empty)', { timeout: 300_000 });
    assert.equal(await text('error'), '');
    const modelFile = await download('download-model', 'page-nodata.onnx');
    const recipeFile = await download('download-recipe', 'recipe-nodata.yaml');
    const out = join(dir, 'cli-native.onnx');
    const env = { ...process.env };
    delete env['SHEARS_RUNTIME'];
    const r = spawnSync(process.execPath, [CLI, 'run', recipeFile, FIXTURE_MODEL, '-o', out, '--json'], { encoding: 'utf8', timeout: 300_000, env });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(await text('result-macs'), (JSON.parse(r.stdout) as { macsRatio: number }).macsRatio.toFixed(3));
    assert.ok(readFileSync(modelFile).equals(readFileSync(out)), 'the page\'s download is the native CLI\'s file, byte for byte');
  });

  test('unstructured 50% and 2:4 without data: the downloaded models hold the zeros asked for', async () => {
    await open();
    await pickModel(FIXTURE_MODEL);
    await page.uncheck('[data-testid=measure-latency]');
    for (const [mode, value, check] of [
      ['unstructured', '0.5', (s: number) => s > 0.45 && s < 0.55],
      ['nm', '2:4', (s: number) => s > 0.45 && s < 0.55],
    ] as const) {
      await page.selectOption('[data-testid=mode]', mode);
      await page.fill('[data-testid=target-value]', value);
      await page.evaluate(`delete document.body.dataset.done`);
      await page.click('[data-testid=run-button]');
      await page.waitForSelector('body[data-done], [data-testid=error]:not(:empty)', { timeout: 300_000 });
      assert.equal(await text('error'), '');
      assert.equal(await text('result-macs'), '1.000', `${mode}: the dense MACs stay`);
      const m = parseModelBytes(new Uint8Array(readFileSync(await download('download-model', `${mode}.onnx`))));
      const r = inspectModel(m, { input: [1, 1, 28, 28] });
      console.log(`# ${mode} ${value}: layer weights ${(100 * r.weightSparsity).toFixed(2)}% zero`);
      assert.ok(check(r.weightSparsity), `${mode}: weight sparsity ${r.weightSparsity}`);
      assert.equal(await page.locator('[data-testid=download-plan]').isHidden(), true, 'no plan for an unstructured prune');
    }
    await shot('7-nm');
  });

  test('a latency target: the prune measures candidates with onnxruntime-web in the tab', async () => {
    await open();
    await pickModel(FIXTURE_MODEL);
    await page.uncheck('[data-testid=measure-latency]');
    await page.selectOption('[data-testid=target-kind]', 'latency');
    assert.equal(await page.inputValue('[data-testid=target-value]'), '0.7');
    await page.click('[data-testid=run-button]');
    await page.waitForSelector('body[data-done], [data-testid=error]:not(:empty)', { timeout: 300_000 });
    const log = await text('log');
    // the latency planner's table, measured with onnxruntime-web in the tab
    assert.match(log, /latency model: dense [\d.]+ ms measured at batch 1/);
    const error = await text('error');
    if (error !== '') {
      // what a loaded machine measures can put 0.7 out of reach: then the page says so, with the closest figure
      assert.match(error, /cannot be reached by channel widths .* closest reachable is \d/);
      console.log(`# latency target 0.7 out of reach on this machine now: ${error}`);
      return;
    }
    assert.match(log, /planned for 70\.0% latency: predicted [\d.]+ ms of [\d.]+/);
    const kept = Number(await text('result-macs'));
    console.log(`# latency target 0.7: kept MACs ${kept}`);
    assert.ok(kept > 0 && kept < 1, `kept MACs ${kept}`); // what a noisy shared machine measures varies
  });

  test('no request left the local server; no uncaught page error', () => {
    const outside = requests.filter((u) => !u.startsWith(server.url) && !u.startsWith('blob:') && !u.startsWith('data:'));
    assert.deepEqual(outside, []);
    assert.ok(requests.some((u) => u.endsWith('.wasm')), 'the wasm came from the local server');
    assert.deepEqual(pageErrors, []);
  });
});
