/** The evidence report (report/evidence.ts, report/html.ts, `shears report`). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inspectModel } from '../src/analysis/inspect.js';
import { openDataset } from '../src/data/spec.js';
import { cloneModel } from '../src/ir/clone.js';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { pruneStructured } from '../src/prune/structured/index.js';
import { gatherEvidence, type EvidenceReport } from '../src/report/evidence.js';
import { renderEvidenceHtml } from '../src/report/html.js';
import { FIXTURE_MODEL, isUserError, shears } from './cli-helpers.js';

const DEMO = fileURLToPath(new URL('../../data/fashion-mnist-demo', import.meta.url));
const pp = { scale: 1 / 255, mean: [0.286], std: [0.353] };
const dir = mkdtempSync(join(tmpdir(), 'shears-report-'));
const shapes = { input: [1, 1, 28, 28] };

let cached: Promise<EvidenceReport> | undefined;
/** dense, an exact copy of it, and a structurally pruned variant, on 200 demo test images. */
function report(): Promise<EvidenceReport> {
  cached ??= (async () => {
    const dense = loadModel(FIXTURE_MODEL);
    const pruned = pruneStructured(dense, { targetMacs: 0.5, inputShapes: shapes }).model;
    return gatherEvidence([
      { label: 'dense', model: dense },
      { label: 'copy', model: cloneModel(dense) },
      { label: 'pruned <b>&', model: pruned },
    ], { data: openDataset(`${DEMO}@t10k`, pp), dataLimit: 200, threads: 1, runs: 3, warmup: 1, batch: 4 });
  })();
  return cached;
}

test('evidence: sizes, parameters and MACs as inspect counts them; ratios to the first model', async () => {
  const r = await report();
  assert.deepEqual(r.models.map((m) => m.label), ['dense', 'copy', 'pruned <b>&']);
  const dense = loadModel(FIXTURE_MODEL);
  const di = inspectModel(dense, shapes);
  const [d, c, p] = r.models as [typeof r.models[0], typeof r.models[0], typeof r.models[0]];
  assert.equal(d.params, di.params);
  assert.equal(d.macs, di.macs);
  assert.deepEqual(d.vsBase, { fileBytes: 1, gzipBytes: 1, params: 1, nonzeroParams: 1, macs: 1, speedup: 1, cpuSpeedup: 1, top1Delta: 0 });
  const pi = inspectModel(pruneStructured(dense, { targetMacs: 0.5, inputShapes: shapes }).model, shapes);
  assert.equal(p.macs, pi.macs);
  assert.ok(Math.abs(p.vsBase.macs - pi.macs / di.macs) < 1e-12);
  assert.ok(p.vsBase.macs > 0.45 && p.vsBase.macs < 0.55, `${p.vsBase.macs}`);
  assert.ok(p.vsBase.params < 1 && p.fileBytes < d.fileBytes);
  // Per-layer output channels, matched by layer name: some of the pruned model's layers are narrower.
  const denseCh = new Map(d.layers.map((l) => [l.name, l.channels]));
  assert.equal(d.layers.find((l) => l.op === 'Conv')!.channels, 16);
  assert.ok(p.layers.some((l) => l.channels !== undefined && l.channels < denseCh.get(l.name)!));
  assert.equal(c.fileBytes, d.fileBytes);
  for (const m of r.models) assert.ok(Number.isFinite(m.latency.median) && m.latency.median > 0 && m.latency.runs === 3);
  assert.equal(r.settings.batch, 4);
  assert.equal(r.settings.samples, 200);
});

test('evidence: accuracy of every model; an exact copy agrees with the base on every sample', async () => {
  const r = await report();
  const [d, c, p] = r.models;
  assert.ok(d!.accuracy!.top1 > 0.85, `${d!.accuracy!.top1}`);
  assert.equal(d!.fidelity, undefined);
  assert.equal(c!.accuracy!.top1, d!.accuracy!.top1);
  assert.equal(c!.fidelity!['logits']!.agreement, 1);
  assert.equal(c!.fidelity!['logits']!.maxAbs, 0);
  assert.equal(c!.vsBase.top1Delta, 0);
  // One-shot structured pruning without repair loses most of the accuracy: the report must show it.
  assert.ok(p!.fidelity!['logits']!.agreement! < 0.9);
  assert.ok(Math.abs(p!.vsBase.top1Delta! - (p!.accuracy!.top1 - d!.accuracy!.top1)) < 1e-12);
});

test('HTML: tables, the embedded JSON equals the report, labels are escaped, Chart.js is inlined', async () => {
  const r = await report();
  const html = renderEvidenceHtml(r);
  assert.ok(html.startsWith('<!doctype html>'));
  assert.ok(html.includes('pruned &lt;b&gt;&amp;'));
  assert.ok(!html.includes('pruned <b>&'), 'labels are escaped in the markup');
  const m = /<script type="application\/json" id="evidence">([\s\S]*?)<\/script>/.exec(html);
  assert.ok(m);
  assert.deepEqual(JSON.parse(m[1]!), JSON.parse(JSON.stringify(r)));
  assert.ok(html.includes('Chart.js v4'));
  for (const id of ['tradeoff', 'ratios', 'layers']) assert.ok(html.includes(`<canvas id="${id}">`), id);
  // A label that tries to end the JSON script element stays inside it.
  const evil = renderEvidenceHtml({ ...r, models: r.models.map((x, i) => (i === 1 ? { ...x, label: '</script><script>alert(1)</script>' } : x)) });
  assert.ok(!evil.includes('<script>alert(1)'));
});

test('evidence: bad input', async () => {
  const dense = loadModel(FIXTURE_MODEL);
  await assert.rejects(gatherEvidence([]), /at least one model/);
  await assert.rejects(gatherEvidence([{ label: 'a', model: dense }, { label: 'a', model: dense }]), /labels must differ/);
});

test('shears report: JSON and HTML written; bad labels and missing files are user errors', () => {
  const pruned = join(dir, 'pruned.onnx');
  saveModel(pruneStructured(loadModel(FIXTURE_MODEL), { targetMacs: 0.6, inputShapes: shapes }).model, pruned);
  const html = join(dir, 'r.html');
  const r = shears(['report', FIXTURE_MODEL, pruned, '--labels', 'dense,p60', '--data', `idx:${DEMO}@t10k`, '--data-limit', '64',
    '--scale', '1/255', '--mean', '0.286', '--std', '0.353', '--runs', '2', '--warmup', '1', '--threads', '1', '--html', html, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const rep = JSON.parse(r.stdout) as EvidenceReport;
  assert.deepEqual(rep.models.map((m) => m.label), ['dense', 'p60']);
  assert.ok(rep.models[1]!.vsBase.macs < 0.7);
  assert.ok(existsSync(html) && readFileSync(html, 'utf8').includes('dense vs p60'));
  const text = shears(['report', FIXTURE_MODEL, pruned, '--runs', '2', '--warmup', '1', '--threads', '1']);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /fmnist_resnet20\s+-\s+base/);
  assert.ok(isUserError(shears(['report', FIXTURE_MODEL, pruned, '--labels', 'one'])));
  assert.ok(isUserError(shears(['report', FIXTURE_MODEL, join(dir, 'missing.onnx')])));
  const noDir = shears(['report', FIXTURE_MODEL, '--html', join(dir, 'no', 'such', 'r.html')]);
  assert.ok(isUserError(noDir));
  assert.match(noDir.stderr, /the folder '.*no\/such' does not exist/);
});
