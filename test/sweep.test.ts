/** `shears sweep` and the Pareto front (pipeline/sweep.ts, report/pareto.ts, report/html.ts). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDataset } from '../src/data/spec.js';
import { loadModel } from '../src/onnx/io.js';
import { sweep, SweepStopped, parseTargets } from '../src/pipeline/sweep.js';
import { evidencePareto, paretoFront } from '../src/report/pareto.js';
import type { EvidenceReport, ModelEvidence } from '../src/report/evidence.js';
import { renderEvidenceHtml } from '../src/report/html.js';
import { ShearsError } from '../src/errors.js';
import { spawn } from 'node:child_process';
import { CLI, FIXTURE_MODEL, isUserError, shears } from './cli-helpers.js';

const DEMO = fileURLToPath(new URL('../../data/fashion-mnist-demo', import.meta.url));
const PRE = ['--scale', '1/255', '--mean', '0.2860', '--std', '0.3530'];

test('paretoFront: hand-made points (dominated, equal, non-finite)', () => {
  const on = paretoFront([
    { latency: 10, quality: 0.9 }, // the most accurate
    { latency: 5, quality: 0.8 }, // faster, less accurate: on
    { latency: 6, quality: 0.7 }, // slower and worse than the one above: off
    { latency: 5, quality: 0.8 }, // equal to an on-front point: on too
    { latency: 12, quality: 0.85 }, // slower and worse than the first: off
    { latency: Number.NaN, quality: 1 }, // unmeasured: never on, and dominates nothing
    { latency: 3, quality: 0.5 }, // the fastest: on
    { latency: 10, quality: 0.9 - 1e-9 }, // as fast as the first, a hair worse: off
  ]);
  assert.deepEqual(on, [true, true, false, true, false, false, true, false]);
  assert.deepEqual(paretoFront([]), []);
  assert.deepEqual(paretoFront([{ latency: 1, quality: 0 }]), [true]);
});

/** A model of an evidence report with only what the front and the page read. */
function model(label: string, ms: number, extra: Partial<ModelEvidence>): ModelEvidence {
  return {
    label, fileBytes: 1000, gzipBytes: 900, params: 100, nonzeroParams: 100, sparsity: 0, macs: 1e6,
    latency: { median: ms, p90: ms * 1.1, mean: ms, min: ms, cpuMedian: ms * 2, runs: 3, warmup: 1, batch: 1, threads: 1, inputShapes: { x: [1, 3] } },
    vsBase: { fileBytes: 1, gzipBytes: 1, params: 1, nonzeroParams: 1, macs: 1, speedup: 1, cpuSpeedup: 1 },
    layers: [], ...extra,
  };
}

function evidence(models: ModelEvidence[]): EvidenceReport {
  return {
    createdAt: '2026-01-01T00:00:00Z', environment: { node: 'v20', onnxruntime: '1', cpu: 'cpu', cores: 2, platform: 'linux' },
    settings: { batch: 1, threads: 1, warmup: 1, runs: 3, dataset: 'demo', samples: 10 }, models,
  };
}

const acc = (top1: number) => ({ accuracy: { top1, samples: 10, output: 'logits' } });
const fid = (agreement: number, relMse: number) => ({ fidelity: { logits: { samples: 10, agreement, relMse, maxAbs: 1 } } });

test('evidencePareto: top-1 when every model has it, else agreement (the base agrees with itself), else -relMSE; fastest first', () => {
  const r = evidence([model('dense', 10, acc(0.94)), model('a', 8, acc(0.93)), model('b', 9, acc(0.92)), model('c', 5, acc(0.80))]);
  assert.deepEqual(evidencePareto(r), { metric: 'top1', latency: 'median', front: ['c', 'a', 'dense'] });
  // by CPU time (2x the wall time here: same order)
  assert.deepEqual(evidencePareto(r, 'cpuMedian')?.front, ['c', 'a', 'dense']);
  const f = evidence([model('dense', 10, {}), model('a', 8, fid(0.99, 1e-3)), model('b', 7, fid(1, 2e-3))]);
  // agreement: b agrees as much as the base and is faster; a is slower and agrees less
  assert.deepEqual(evidencePareto(f), { metric: 'agreement', latency: 'median', front: ['b'] });
  const scalar = evidence([model('dense', 10, {}), model('a', 8, { fidelity: { y: { samples: 10, relMse: 1e-3, maxAbs: 1 } } }), model('b', 9, { fidelity: { y: { samples: 10, relMse: 1e-4, maxAbs: 1 } } })]);
  assert.deepEqual(evidencePareto(scalar), { metric: 'relMse', latency: 'median', front: ['a', 'b', 'dense'] });
  // no data scored: no front
  assert.equal(evidencePareto(evidence([model('dense', 10, {}), model('a', 8, {})])), undefined);
});

test('report HTML: the accuracy-against-latency chart with the front, a table row per model, the front marked', () => {
  const r = evidence([model('dense', 10, acc(0.94)), model('macs0.9', 8, acc(0.935)), model('macs0.5 <i>', 9, acc(0.90)), model('macs0.3', 4, acc(0.85))]);
  r.pareto = evidencePareto(r)!;
  const html = renderEvidenceHtml(r);
  assert.match(html, /<canvas id="tradeoff"><\/canvas>/);
  assert.match(html, /<h3>Pareto front<\/h3>/);
  const table = /<table class="pareto">(.*?)<\/table>/s.exec(html)![1]!;
  const rows = [...table.matchAll(/<tr( class="front")?><td>(.*?)<\/td>.*?<\/tr>/g)].map((m) => [m[2], m[1] !== undefined]);
  // fastest first; the label escaped; the slower, less accurate macs0.5 off the front
  assert.deepEqual(rows, [['macs0.3', true], ['macs0.9', true], ['macs0.5 &lt;i&gt;', false], ['dense (base)', true]]);
  assert.match(table, /<td>93\.50%<\/td>/);
  // the chart's points, as the page's script reads them
  const pts = JSON.parse(/<script type="application\/json" id="pareto">(.*?)<\/script>/s.exec(html)![1]!);
  assert.equal(pts.points.length, 4);
  assert.deepEqual(pts.points.map((p: { front: boolean }) => p.front), [true, true, false, true]);
  assert.equal(pts.points[1].y, 93.5);
  assert.match(pts.yTitle, /top-1/);
  // without a front the page is as before
  delete r.pareto;
  assert.doesNotMatch(renderEvidenceHtml(r), /id="pareto"|<h3>Pareto front/);
});

test('parseTargets: comma lists of fractions in (0, 1]; empty, garbage, out of range and repeated values refused', () => {
  assert.deepEqual(parseTargets('0.9, 0.5,1,.3'), [0.9, 0.5, 1, 0.3]);
  for (const bad of ['', ' ', '0.9,,0.5', '0.9,', 'abc', '0.5x', '0', '-0.5', '1.01', 'NaN', 'Infinity', '0.5,0.5', '1e3']) {
    assert.throws(() => parseTargets(bad), ShearsError, bad);
  }
});

test('sweep (library): stops between targets on its signal with the variants built so far', async () => {
  const dense = loadModel(FIXTURE_MODEL);
  const ac = new AbortController();
  const seen: string[] = [];
  const run = sweep(dense, {
    targets: [0.8, 0.6, 0.4], kind: 'macs', openData: async (spec, pp) => openDataset(spec, pp), signal: ac.signal,
    onVariant: (v) => {
      seen.push(v.label);
      ac.abort(); // after the first variant
      return `/nowhere/${v.label}.onnx`;
    },
  });
  await assert.rejects(run, (e: unknown) => {
    assert.ok(e instanceof SweepStopped);
    assert.equal(e.phase, 'build');
    assert.deepEqual(e.built, [{ label: 'macs0.8', target: 0.8, file: '/nowhere/macs0.8.onnx' }]);
    return true;
  });
  assert.deepEqual(seen, ['macs0.8']);
  // aborted before it starts: nothing is planned
  await assert.rejects(sweep(dense, { targets: [0.5], openData: async (s, pp) => openDataset(s, pp), signal: AbortSignal.abort() }), (e: unknown) => e instanceof SweepStopped && e.phase === 'plan' && e.built.length === 0);
});

test('shears sweep: MAC targets with lsq repair; every variant valid, its accuracy and MACs as eval/inspect give them separately; sweep.json, sweep.html; report marks the front', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-sweep-'));
  const out = join(dir, 'out');
  const r = shears(['sweep', FIXTURE_MODEL, '--targets', '0.8,0.5', '--out', out, '--repair', 'lsq', '--calib', `${DEMO}@train`, '--calib-size', '64',
    '--val', DEMO, '--val-limit', '300', '--batch', '2', '--threads', '1', '--runs', '3', '--warmup', '1', ...PRE, '--json'], { timeoutMs: 600_000 });
  assert.equal(r.code, 0, r.stderr);
  const rep = JSON.parse(r.stdout);
  assert.equal(rep.format, 'shears.sweep');
  assert.equal(rep.kind, 'macs');
  assert.equal(rep.metric, 'top1');
  assert.deepEqual(rep.points.map((p: { label: string }) => p.label), ['macs0.8', 'macs0.5']);
  assert.equal(rep.dense.top1, 282 / 300); // the first 300 demo test images (see eval.test.ts: 94.00% on 1000)
  assert.deepEqual(readdirSync(out).sort(), ['fmnist_resnet20-macs0.5.onnx', 'fmnist_resnet20-macs0.8.onnx', 'sweep.html', 'sweep.json']);
  const saved = JSON.parse(readFileSync(join(out, 'sweep.json'), 'utf8'));
  assert.deepEqual(saved.points.map((p: { top1: number }) => p.top1), rep.points.map((p: { top1: number }) => p.top1));
  assert.equal(saved.evidence.pareto.front.length, rep.front.length);
  for (const p of rep.points) {
    // within the planner's 2% of the target, repaired by lsq (calibration scores in the pipeline report)
    assert.ok(Math.abs(p.macsRatio - p.target) <= 0.02 * p.target + 1e-9, `${p.label}: ${p.macsRatio}`);
    assert.deepEqual(p.pipeline.repair.methods, ['lsq']);
    assert.equal(p.file, join(out, `fmnist_resnet20-${p.label}.onnx`));
    // evaluated on its own (its preprocessing stored in the file): the same top-1 on the same samples
    const e = shears(['eval', p.file, '--data', DEMO, '--limit', '300', '--json']);
    assert.equal(e.code, 0, e.stderr);
    assert.doesNotMatch(e.stderr, /warning/);
    assert.equal(JSON.parse(e.stdout).accuracy.top1, p.top1, p.label);
    const i = shears(['inspect', p.file, '--json']);
    assert.equal(JSON.parse(i.stdout).macs, p.macs, p.label);
    assert.equal(p.macsRatio, p.macs / rep.dense.macs);
    // lsq keeps these variants close to the dense model (they are not chance)
    assert.ok(p.top1 > 0.85, `${p.label}: ${p.top1}`);
    assert.ok(p.latencyRatio > 0 && Number.isFinite(p.latencyRatio));
  }
  // the front: each point on it iff no other point is as fast and as accurate (better on one)
  const all = [rep.dense, ...rep.points];
  for (const p of all) {
    const beaten = all.some((q) => q !== p && q.latencyMs <= p.latencyMs && q.top1 >= p.top1 && (q.latencyMs < p.latencyMs || q.top1 > p.top1));
    assert.equal(p.pareto, !beaten, p.label);
    assert.equal(rep.front.includes(p.label), p.pareto);
  }
  const html = readFileSync(join(out, 'sweep.html'), 'utf8');
  assert.match(html, /<canvas id="tradeoff">/);
  assert.match(html, /Chart\.js|new Chart/);
  for (const l of ['dense (base)', 'macs0.8', 'macs0.5']) assert.match(html, new RegExp(`<td>${l.replace(/[()]/g, '\\$&')}</td>`), l);
  // shears report with several variants: the front in the JSON and the text
  const files = [FIXTURE_MODEL, ...rep.points.map((p: { file: string }) => p.file)];
  const j = shears(['report', ...files, '--data', DEMO, '--data-limit', '100', '--runs', '2', '--warmup', '1', '--threads', '1', '--json']);
  assert.equal(j.code, 0, j.stderr);
  const ev = JSON.parse(j.stdout);
  assert.equal(ev.pareto.metric, 'top1');
  assert.ok(ev.pareto.front.length >= 1 && ev.pareto.front.every((l: string) => ev.models.some((m: { label: string }) => m.label === l)));
});

test('shears sweep: bad input exits 2 with one error line, before writing anything', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-sweep-bad-'));
  const out = join(dir, 'o');
  const notDir = join(dir, 'file.txt');
  writeFileSync(notDir, 'x');
  // a link in the output folder, under the name a variant would take, to the model
  const model = join(dir, 'm.onnx');
  copyFileSync(FIXTURE_MODEL, model);
  const inOut = join(dir, 'in');
  mkdirSync(inOut);
  symlinkSync(model, join(inOut, 'm-macs0.5.onnx'));
  const cases: string[][] = [
    ['sweep', FIXTURE_MODEL, '--out', out], // no --targets
    ['sweep', FIXTURE_MODEL, '--targets', '0.5'], // no --out
    ['sweep', FIXTURE_MODEL, '--targets', '', '--out', out],
    ['sweep', FIXTURE_MODEL, '--targets', 'abc', '--out', out],
    ['sweep', FIXTURE_MODEL, '--targets', '0.9,,0.5', '--out', out],
    ['sweep', FIXTURE_MODEL, '--targets', '0', '--out', out],
    ['sweep', FIXTURE_MODEL, '--targets', '1.2', '--out', out],
    ['sweep', FIXTURE_MODEL, '--targets', '0.5,0.5', '--out', out],
    ['sweep', FIXTURE_MODEL, '--targets', '0.5', '--target-kind', 'flops', '--out', out],
    ['sweep', FIXTURE_MODEL, '--targets', '0.5', '--out', notDir],
    ['sweep', FIXTURE_MODEL, '--targets', '0.5', '--out', join(dir, 'missing', 'o')],
    ['sweep', FIXTURE_MODEL, '--targets', '0.5', '--out', out, '--repair-damp', '0.1'], // needs --repair
    ['sweep', FIXTURE_MODEL, '--targets', '0.5', '--out', out, '--finetune-epochs', '1'], // needs --train
    ['sweep', FIXTURE_MODEL, '--targets', '0.5', '--out', out, '--val-limit', '10'], // needs --val
    ['sweep', FIXTURE_MODEL, '--targets', '0.5', '--out', out, '--repair', 'lsq'], // needs --calib
    ['sweep', model, '--targets', '0.5', '--out', inOut], // a variant would replace the input (through the link)
  ];
  for (const args of cases) {
    const r = shears(args);
    assert.ok(isUserError(r), `${args.join(' ')}: ${r.code} ${r.stderr}`);
  }
  assert.ok(!existsSync(out), 'nothing written');
  assert.deepEqual(readdirSync(inOut), ['m-macs0.5.onnx']);
  assert.deepEqual(readFileSync(model), readFileSync(FIXTURE_MODEL));
  // a target the model cannot reach: exit 2, one error line naming the closest reachable figure; nothing built
  const r = shears(['sweep', FIXTURE_MODEL, '--targets', '0.5,0.0001', '--out', out]);
  assert.equal(r.code, 2, r.stderr);
  const errors = r.stderr.split('\n').filter((l) => l.startsWith('shears: '));
  assert.equal(errors.length, 1, r.stderr);
  assert.match(errors[0]!, /^shears: error: the model cannot reach the macs target: 0\.0001 \(closest reachable: 0\.0\d\d\); nothing was built or written$/);
  assert.ok(!existsSync(out) || readdirSync(out).length === 0, 'nothing written');
});


test('shears sweep: Ctrl-C keeps the variants written so far (valid models), writes no sweep.json, exits 130', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-sweep-int-'));
  const out = join(dir, 'o');
  const child = spawn(process.execPath, [CLI, 'sweep', FIXTURE_MODEL, '--targets', '0.8,0.6,0.4', '--out', out, '--repair', 'lsq', '--calib', `${DEMO}@train`, '--calib-size', '64', ...PRE], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let sent = false;
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    stderr += d;
    // once the first variant is written
    if (!sent && /\] wrote /.test(stderr)) {
      sent = true;
      child.kill('SIGINT');
    }
  });
  const code = await new Promise<number | null>((res) => child.on('exit', (c) => res(c)));
  assert.ok(sent, stderr);
  assert.equal(code, 130, stderr);
  assert.match(stderr, /shears: interrupted: sweep stopped while building variants: \d variant\(s\) built \(written: .*\); no sweep\.json or sweep\.html written/);
  const files = readdirSync(out);
  assert.ok(!files.includes('sweep.json') && !files.includes('sweep.html'), files.join(', '));
  assert.ok(files.length >= 1 && files.length < 3 && files.every((f) => /^fmnist_resnet20-macs0\.[86]\.onnx$/.test(f)), files.join(', '));
  for (const f of files) {
    const e = shears(['eval', join(out, f), '--data', DEMO, '--limit', '100', '--json']);
    assert.equal(e.code, 0, e.stderr);
    assert.ok(JSON.parse(e.stdout).accuracy.top1 > 0.8, f);
  }
});

test('the HTML report names the runtime and host it was measured with (onnxruntime-web in a browser page)', () => {
  const node = evidence([model('dense', 10, acc(0.94))]);
  assert.match(renderEvidenceHtml(node), /with onnxruntime-node 1 on cpu \(2 cores, linux, Node v20\)/);
  const page = { ...node, environment: { node: 'Mozilla/5.0 (X11) Chrome/156', onnxruntime: '1.23.0', runtime: 'onnxruntime-web', cpu: 'unknown (browser)', cores: 4, platform: 'browser' } };
  const html = renderEvidenceHtml(page);
  assert.match(html, /with onnxruntime-web 1\.23\.0 on unknown \(browser\) \(4 cores, browser, in Mozilla\/5\.0 \(X11\) Chrome\/156\)/);
  assert.doesNotMatch(html, /onnxruntime-node|Node Mozilla/);
});

test('shears sweep: latency targets with --remove-blocks and a latency table file: each variant is its plan replayed (blocks and widths), built without the planning-only options', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-sweep-depth-'));
  const out = join(dir, 'out');
  const r = shears(['sweep', FIXTURE_MODEL, '--targets', '0.7', '--target-kind', 'latency', '--remove-blocks', '1', '--latency-cache', join(dir, 'table.json'),
    '--batch', '2', '--threads', '1', '--runs', '3', '--warmup', '1', '--val', DEMO, '--val-limit', '100', '--out', out, '--json'], { timeoutMs: 600_000 });
  assert.equal(r.code, 0, r.stderr);
  const rep = JSON.parse(r.stdout);
  assert.equal(rep.points.length, 1);
  assert.equal(rep.points[0].pipeline.removedBlocks.length, 1, JSON.stringify(rep.points[0].pipeline));
  assert.ok(existsSync(rep.points[0].file));
  assert.ok(existsSync(join(dir, 'table.json')), 'the latency table is kept where asked');
  rmSync(dir, { recursive: true, force: true });
});
