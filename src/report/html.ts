/**
 * The evidence report as one self-contained HTML file: tables written here (readable without JavaScript), plots
 * drawn in the browser by Chart.js (inlined, so the file works offline), and the report's JSON embedded for
 * anyone who wants the numbers.
 */
import { platform } from '../fs/platform.js';
import { formatSimilarity } from '../metrics/fidelity.js';
import type { DetectionImage, DrawnDetection, EvidenceReport, ModelEvidence } from './evidence.js';
import { qualityOf, type ParetoMetric } from './pareto.js';

/** Chart.js's UMD build, from the platform's assets (node_modules in Node, the bundle in a browser). */
const chartJs = (): string => platform().asset('chart.umd.min.js');

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
/** JSON safe inside a <script> element: no '</script>', no '<!--'. */
const scriptJson = (v: unknown): string => JSON.stringify(v).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
/** Chart.js code is inlined as it is; only a literal '</script' inside it would end the element early. */
const scriptCode = (s: string): string => s.replace(/<\/script/gi, '<\\/script');

const pct = (v: number, digits = 2) => `${(100 * v).toFixed(digits)}%`;
const ratio = (v: number) => `${v.toFixed(3)}x`;
const ms = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(3));
const count = (v: number) => (v >= 1e9 ? `${(v / 1e9).toFixed(3)} G` : v >= 1e6 ? `${(v / 1e6).toFixed(3)} M` : v >= 1e3 ? `${(v / 1e3).toFixed(1)} k` : String(v));
const bytes = (v: number) => (v >= 2 ** 20 ? `${(v / 2 ** 20).toFixed(2)} MiB` : v >= 1024 ? `${(v / 1024).toFixed(1)} KiB` : `${v} B`);

function fidelityCell(m: ModelEvidence): string {
  if (!m.fidelity) return '';
  return Object.entries(m.fidelity)
    .map(([name, f]) => `${esc(name)}: ${f.agreement !== undefined ? `agreement ${pct(f.agreement)}, ` : ''}${esc(formatSimilarity(f, 5))}`)
    .join('<br>');
}

function detectionCells(m: ModelEvidence, k: number, hasMap: boolean): string[] {
  const d = m.detection;
  const f4 = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '' : v.toFixed(4));
  const f = d?.fidelity;
  return [
    ...(hasMap ? [f4(d?.map50), f4(d?.map5095), d?.ultralytics ? `${f4(d.ultralytics.map50)} / ${f4(d.ultralytics.map5095)}` : ''] : []),
    k === 0 ? '(base)' : f ? `recall ${f4(f.recall)}, precision ${f4(f.precision)}<br>mean IoU ${f4(f.meanIou)}, score corr. ${f4(f.scoreCorrelation)}` : '',
  ];
}

function summaryTable(r: EvidenceReport): string {
  const det = r.settings.task === 'detect';
  const hasMap = det && r.models.some((m) => m.detection?.map5095 !== undefined);
  const acc = !det && r.models.some((m) => m.accuracy);
  const fid = !det && r.models.some((m) => m.fidelity);
  const detHead = det ? [...(hasMap ? ['mAP50', 'mAP50-95', 'Ultralytics mAP50 / 50-95'] : []), 'detection fidelity vs base (score &ge; 0.25, IoU &ge; 0.5)'] : [];
  const head = ['model', ...detHead, ...(acc ? ['top-1', 'Δ top-1'] : []), ...(fid ? ['fidelity vs base'] : []), 'latency median (p90), ms', 'speedup (CPU time)', 'MACs', 'parameters (nonzero)', 'file (gzip)'];
  const rows = r.models.map((m, k) => {
    const cells = [
      `<b>${esc(m.label)}</b>${m.path ? `<br><span class="path">${esc(m.path)}</span>` : ''}`,
      ...(det ? detectionCells(m, k, hasMap) : []),
      ...(acc ? [m.accuracy ? pct(m.accuracy.top1) : '', k === 0 || m.vsBase.top1Delta === undefined ? '' : `${m.vsBase.top1Delta >= 0 ? '+' : ''}${(100 * m.vsBase.top1Delta).toFixed(2)} pt`] : []),
      ...(fid ? [k === 0 ? '(base)' : fidelityCell(m)] : []),
      `${ms(m.latency.median)} (${ms(m.latency.p90)})`,
      k === 0 ? '1x' : `${ratio(m.vsBase.speedup)} (${ratio(m.vsBase.cpuSpeedup)})`,
      `${count(m.macs)}${k === 0 ? '' : ` (${pct(m.vsBase.macs, 1)})`}`,
      `${count(m.params)} (${count(m.nonzeroParams)})${k === 0 ? '' : `<br>${pct(m.vsBase.nonzeroParams, 1)} of base nonzero`}`,
      `${bytes(m.fileBytes)} (${bytes(m.gzipBytes)})${k === 0 ? '' : `<br>${pct(m.vsBase.gzipBytes, 1)} of base gzip`}`,
    ];
    return `<tr>${cells.map((c) => `<td>${c}</td>`).join('')}</tr>`;
  });
  return `<table><thead><tr>${head.map((h) => `<th>${h}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function layerTable(r: EvidenceReport): string {
  const base = r.models[0]!;
  const byName = r.models.map((m) => new Map(m.layers.map((l) => [l.name, l])));
  const head = ['layer', 'op', ...r.models.map((m) => `${esc(m.label)}: channels / MACs / sparsity`)];
  const rows = base.layers.map((l) => {
    const cells = [esc(l.name), esc(l.op), ...byName.map((mp) => {
      const x = mp.get(l.name);
      return x ? `${x.channels ?? ''} / ${count(x.macs)} / ${pct(x.sparsity, 1)}` : '(gone)';
    })];
    return `<tr>${cells.map((c) => `<td>${c}</td>`).join('')}</tr>`;
  });
  return `<table class="layers"><thead><tr>${head.map((h) => `<th>${h}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

const BOX_COLORS = ['#e15759', '#4e79a7', '#f28e2b', '#59a14f', '#b07aa1', '#edc948', '#76b7b2', '#ff9da7', '#9c755f', '#bab0ac'];

/** One image with boxes drawn over it as inline SVG (the image a data URL; no network, no script). */
function boxesSvg(im: DetectionImage, dets: DrawnDetection[], names: string[]): string {
  const w = im.width, h = im.height;
  const scale = Math.min(4, 320 / Math.max(w, h));
  const font = Math.max(w, h) / 22;
  const rect = (d: DrawnDetection, truth: boolean) => {
    const [x1, y1, x2, y2] = d.box;
    const c = truth ? '#2ca02c' : BOX_COLORS[d.class % BOX_COLORS.length]!;
    const name = names[d.class] ?? String(d.class);
    const label = truth ? '' : `<text x="${x1}" y="${Math.max(font, y1 - 1)}" font-size="${font.toFixed(2)}" fill="${c}" stroke="#fff" stroke-width="${(font / 8).toFixed(2)}" paint-order="stroke">${esc(name)} ${d.score.toFixed(2)}</text>`;
    return `<rect x="${x1}" y="${y1}" width="${Math.max(0, x2 - x1)}" height="${Math.max(0, y2 - y1)}" fill="none" stroke="${c}" stroke-width="1.5" vector-effect="non-scaling-stroke"${truth ? ' stroke-dasharray="4 3"' : ''}><title>${esc(truth ? `truth: ${name}` : `${name} ${d.score}`)}</title></rect>${label}`;
  };
  const img = im.dataUrl ? `<image href="${im.dataUrl}" x="0" y="0" width="${w}" height="${h}" style="image-rendering:pixelated"/>` : `<rect width="${w}" height="${h}" fill="#eee"/>`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${Math.round(w * scale)}" height="${Math.round(h * scale)}" viewBox="0 0 ${w} ${h}">${img}${(im.truth ?? []).map((d) => rect(d, true)).join('')}${dets.map((d) => rect(d, false)).join('')}</svg>`;
}

/** The detection images: one row per image, one panel per model. */
function detectionImages(r: EvidenceReport): string {
  const d = r.detection;
  if (!d || d.images.length === 0) return '';
  const labels = r.models.map((m) => m.label);
  const rows = d.images.map((im) => `<tr><td class="path">${esc(im.file)}<br>${im.width}x${im.height}</td>${labels.map((l) => `<td>${boxesSvg(im, im.detections[l] ?? [], d.names)}<br>${(im.detections[l] ?? []).length} detections</td>`).join('')}</tr>`);
  return `<h2>Detections on validation images</h2>
<p class="meta">Boxes with score &ge; 0.25 after NMS, in original image pixels; ground truth dashed green.</p>
<table class="dets"><thead><tr><th>image</th>${labels.map((l) => `<th>${esc(l)}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

const METRIC_TITLE: Record<ParetoMetric, string> = { top1: 'top-1 %', 'map50-95': 'mAP50-95', agreement: 'top-1 agreement with the base, %', relMse: 'relative MSE to the base (lower is better)' };

/** The points of the accuracy-against-latency chart with the front marked (report.pareto), as the chart reads them. */
function paretoPoints(r: EvidenceReport): { xTitle: string; yTitle: string; points: { label: string; x: number; y: number | null; front: boolean }[] } | undefined {
  const p = r.pareto;
  if (!p) return undefined;
  const scale = p.metric === 'top1' || p.metric === 'agreement' ? 100 : 1;
  return {
    xTitle: `latency, ${p.latency === 'cpuMedian' ? 'median CPU time' : 'median'} ms (batch ${r.settings.batch}, ${r.settings.threads ?? 'default'} threads)`,
    yTitle: p.metric ? METRIC_TITLE[p.metric] : 'MMACs (no data scored)',
    points: r.models.map((m, k) => {
      const q = p.metric ? qualityOf(m, p.metric, k === 0) : m.macs / 1e6;
      return { label: m.label, x: m.latency[p.latency], y: q === undefined ? null : p.metric === 'relMse' ? -q : q * scale, front: p.front.includes(m.label) };
    }),
  };
}

/** The front as a table (readable without JavaScript): every model, fastest first, the front marked. */
function paretoTable(r: EvidenceReport): string {
  const pts = paretoPoints(r);
  if (!pts) return '';
  const p = r.pareto!;
  const base = pts.points[0]!;
  const rows = [...pts.points].sort((a, b) => a.x - b.x).map((q) => {
    const y = q.y === null ? '' : p.metric === 'relMse' ? q.y.toExponential(3) : p.metric === 'map50-95' ? q.y.toFixed(4) : p.metric ? `${q.y.toFixed(2)}%` : q.y.toFixed(3);
    return `<tr${q.front ? ' class="front"' : ''}><td>${esc(q.label)}${q.label === base.label ? ' (base)' : ''}</td><td>${ms(q.x)}</td><td>${ratio(base.x / q.x)}</td><td>${y}</td><td>${q.front ? 'yes' : ''}</td></tr>`;
  });
  return `<h3>Pareto front</h3>
<p class="meta">Models no other model beats on both ${p.metric ? `${esc(METRIC_TITLE[p.metric])} and` : ''} ${p.latency === 'cpuMedian' ? 'median CPU time' : 'median latency'} (as fast or faster and as good or better, better on one).</p>
<table class="pareto"><thead><tr><th>model</th><th>latency, ms</th><th>speedup</th><th>${p.metric ? esc(METRIC_TITLE[p.metric]) : 'MMACs'}</th><th>on the front</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

/** Draws the plots from the embedded JSON (runs in the browser). */
const RENDER = `
(function () {
  var r = JSON.parse(document.getElementById('evidence').textContent);
  var colors = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];
  var col = function (k) { return colors[k % colors.length]; };
  if (typeof Chart === 'undefined') return;
  var hasMap = r.models.every(function (m) { return m.detection && m.detection.map5095 !== undefined; });
  var hasAcc = !hasMap && r.models.every(function (m) { return m.accuracy; });
  var front = document.getElementById('pareto') ? JSON.parse(document.getElementById('pareto').textContent) : null;
  if (front) {
    // the Pareto front: one point per model (the dense model a triangle, the front diamonds joined by a line)
    var sets = front.points.map(function (p, k) {
      return { label: p.label + (p.front ? ' (front)' : ''), backgroundColor: col(k), borderColor: p.front ? '#000' : col(k), borderWidth: p.front ? 2 : 1,
        pointStyle: k === 0 ? 'triangle' : p.front ? 'rectRot' : 'circle', pointRadius: p.front || k === 0 ? 9 : 6, data: p.y === null ? [] : [{ x: p.x, y: p.y }] };
    });
    sets.push({ label: 'Pareto front', type: 'line', showLine: true, fill: false, borderColor: '#000', borderDash: [6, 4], pointRadius: 0,
      data: front.points.filter(function (p) { return p.front && p.y !== null; }).sort(function (a, b) { return a.x - b.x; }).map(function (p) { return { x: p.x, y: p.y }; }) });
    new Chart(document.getElementById('tradeoff'), { type: 'scatter', data: { datasets: sets },
      options: { animation: false, scales: { x: { title: { display: true, text: front.xTitle }, beginAtZero: true }, y: { title: { display: true, text: front.yTitle } } } } });
  } else new Chart(document.getElementById('tradeoff'), {
    type: 'scatter',
    data: { datasets: r.models.map(function (m, k) {
      return { label: m.label, backgroundColor: col(k), pointRadius: 7,
        data: [{ x: m.latency.median, y: hasMap ? m.detection.map5095 : hasAcc ? 100 * m.accuracy.top1 : m.macs / 1e6 }] };
    }) },
    options: { animation: false, scales: {
      x: { title: { display: true, text: 'latency, median ms (batch ' + r.settings.batch + ')' }, beginAtZero: true },
      y: { title: { display: true, text: hasMap ? 'mAP50-95' : hasAcc ? 'top-1 %' : 'MMACs' } } } }
  });
  var metrics = [['latency', function (m) { return m.latency.median / r.models[0].latency.median; }],
    ['MACs', function (m) { return m.vsBase.macs; }], ['nonzero parameters', function (m) { return m.vsBase.nonzeroParams; }],
    ['file', function (m) { return m.vsBase.fileBytes; }], ['gzip', function (m) { return m.vsBase.gzipBytes; }]];
  new Chart(document.getElementById('ratios'), {
    type: 'bar',
    data: { labels: metrics.map(function (x) { return x[0]; }), datasets: r.models.map(function (m, k) {
      return { label: m.label, backgroundColor: col(k), data: metrics.map(function (x) { return x[1](m); }) };
    }) },
    options: { animation: false, scales: { y: { title: { display: true, text: 'relative to ' + r.models[0].label }, beginAtZero: true } } }
  });
  var names = r.models[0].layers.filter(function (l) { return l.macs > 0; }).map(function (l) { return l.name; });
  new Chart(document.getElementById('layers'), {
    type: 'bar',
    data: { labels: names, datasets: r.models.map(function (m, k) {
      var by = {}; m.layers.forEach(function (l) { by[l.name] = l; });
      return { label: m.label, backgroundColor: col(k), data: names.map(function (n) { return by[n] ? by[n].macs / 1e6 : 0; }) };
    }) },
    options: { animation: false, scales: { x: { ticks: { autoSkip: true, maxRotation: 90 } }, y: { title: { display: true, text: 'MMACs' }, beginAtZero: true } } }
  });
})();
`;

const CSS = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
table.layers td:nth-child(2) { text-align: left; }
.path { color: #777; font-size: 12px; }
.meta { color: #555; }
tr.front td { font-weight: bold; }
.chart { position: relative; height: 360px; margin: 1em 0 2em; }
`;

/** The report as a self-contained HTML page. */
export function renderEvidenceHtml(r: EvidenceReport, opts: { title?: string } = {}): string {
  const s = r.settings;
  const env = r.environment;
  const title = opts.title ?? `shears evidence: ${r.models.map((m) => m.label).join(' vs ')}`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title><style>${CSS}</style></head>
<body>
<h1>${esc(title)}</h1>
<p class="meta">Measured ${esc(r.createdAt)} with ${esc(env.runtime ?? 'onnxruntime-node')} ${esc(env.onnxruntime)} on ${esc(env.cpu)} (${env.cores} cores, ${esc(env.platform)}, ${env.platform === 'browser' ? 'in' : 'Node'} ${esc(env.node)}).
Latency: batch ${s.batch}, ${s.threads ?? 'default'} threads, ${s.warmup} warm-up and ${s.runs} timed runs per model, interleaved.
${s.dataset && s.task === 'detect' ? `Detectors: mAP (COCO; Ultralytics' beside it) and detection fidelity to the first model on ${esc(s.dataset)}${s.samples !== undefined ? ` (${s.samples} images)` : ''}.` : s.dataset ? `Accuracy and fidelity on ${esc(s.dataset)}${s.samples !== undefined ? ` (${s.samples} samples)` : ''}; fidelity compares each model's outputs with the first model's.` : 'No data set: no accuracy or fidelity.'}
MACs at batch 1.</p>
<h2>Summary</h2>
${summaryTable(r)}
<h2>${s.task === 'detect' ? 'mAP50-95' : 'Accuracy'} against latency</h2>
<div class="chart"><canvas id="tradeoff"></canvas></div>
${paretoTable(r)}
<h2>Relative to ${esc(r.models[0]!.label)}</h2>
<div class="chart"><canvas id="ratios"></canvas></div>
<h2>MACs per layer</h2>
<div class="chart"><canvas id="layers"></canvas></div>
${detectionImages(r)}
<details><summary>Per-layer table</summary>${layerTable(r)}</details>
<script type="application/json" id="evidence">${scriptJson(r)}</script>
${r.pareto ? `<script type="application/json" id="pareto">${scriptJson(paretoPoints(r))}</script>` : ''}
<script>${scriptCode(chartJs())}</script>
<script>${RENDER}</script>
</body></html>
`;
}
