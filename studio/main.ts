/**
 * The studio page's UI thread: reads the chosen files, builds the recipe from the form, and hands all work to
 * the Web Worker (worker.ts); it only draws. Cancel terminates the worker and starts a fresh one.
 */
import { formatRecipe, validateRecipe, type Recipe } from '../src/pipeline/recipe.js';
import type { Step } from '../src/pipeline/steps.js';
import type { FromWorker, InspectResult, ToWorker } from './protocol.js';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);
const THREADS = Math.max(1, Number(params.get('threads') ?? 2) || 2);

const human = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)}G` : n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}K` : String(n));
const bytesText = (n: number) => (n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(2)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);
const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

let worker: Worker;
let busy = false;
let modelName = '';
let modelBytes: ArrayBuffer | undefined;
/** Files chosen with the model: its external data. */
let externalFiles: File[] = [];
let images: { path: string; file: File }[] = [];
const urls: string[] = [];

function setError(message: string): void {
  $('error').textContent = message;
}

function setBusy(b: boolean, status = ''): void {
  busy = b;
  ($('run-button') as HTMLButtonElement).disabled = b || !modelBytes;
  ($('cancel-button') as HTMLButtonElement).disabled = !b;
  ($('model-input') as HTMLInputElement).disabled = b;
  ($('data-input') as HTMLInputElement).disabled = b;
  $('status').textContent = status;
  document.body.dataset['state'] = b ? 'busy' : 'idle';
}

function startWorker(): void {
  worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
  worker.onmessage = (ev: MessageEvent<FromWorker>) => onWorker(ev.data);
  worker.onerror = (ev) => {
    ev.preventDefault();
    setError(`the worker failed: ${ev.message || 'unknown error'}`);
    restartWorker();
    setBusy(false);
  };
}

function restartWorker(): void {
  worker.terminate();
  startWorker();
}

function send(m: ToWorker, transfer: Transferable[] = []): void {
  worker.postMessage(m, transfer);
}

const $progress = () => $('progress') as HTMLProgressElement;

function log(line: string): void {
  const el = $('log');
  el.textContent += `${line}\n`;
}

function onWorker(m: FromWorker): void {
  if (m.type === 'error') {
    setError(m.message);
    setBusy(false, 'failed');
    $progress().value = 0;
    return;
  }
  if (m.type === 'progress') {
    $progress().value = Math.min(1, Math.max(0, m.fraction));
    if (m.message) $('status').textContent = m.message.length > 120 ? `${m.message.slice(0, 117)}...` : m.message;
    if (m.kind !== 'progress' && m.message) log(`[${m.step}] ${m.message}`);
    return;
  }
  if (m.type === 'inspected') {
    showInspect(m.result);
    setBusy(false, `inspected in ${(m.result.ms / 1000).toFixed(2)} s`);
    document.body.dataset['inspected'] = 'true';
    return;
  }
  showResult(m);
  $progress().value = 1;
  setBusy(false, `done in ${(m.ms / 1000).toFixed(2)} s (onnxruntime-web, ${m.threads} thread${m.threads > 1 ? 's' : ''})`);
  document.body.dataset['done'] = 'true';
}

function showInspect(r: InspectResult): void {
  const rep = r.report;
  $('model').hidden = false;
  $('model-title').textContent = `${r.name} (${bytesText(r.fileBytes)})`;
  const shape = (s: (number | string | null)[] | null) => (s ? `[${s.map((d) => d ?? '?').join(', ')}]` : '?');
  const lines = [
    `producer   ${rep.producer || '(none)'}, IR ${rep.irVersion}, opsets ${Object.entries(rep.opsets).map(([d, v]) => `${d || 'ai.onnx'} ${v}`).join(', ')}`,
    ...rep.inputs.map((i) => `input      ${i.name}: ${i.dtype} ${shape(i.shape)}`),
    ...rep.outputs.map((o) => `output     ${o.name}: ${o.dtype} ${shape(o.shape)}`),
    `nodes      ${rep.nodes} (${Object.entries(rep.opCounts).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ')})`,
    `params     ${rep.params.toLocaleString('en-US')} (${human(rep.params)}), ${bytesText(rep.weightBytes)} of weights`,
    `MACs       ${rep.macs.toLocaleString('en-US')} (${human(rep.macs)})`,
    `sparsity   ${(100 * rep.sparsity).toFixed(2)}% of parameters are zero`,
    `groups     ${r.groups.length} dependency groups, ${r.groups.reduce((a, g) => a + g.prunable, 0)} prunable channels${r.groupsError ? ` (not analysed: ${r.groupsError})` : ''}`,
    `inspected  in ${(r.ms / 1000).toFixed(2)} s in this tab`,
  ];
  $('summary').textContent = lines.join('\n');
  const rows = rep.layers.filter((l) => l.params > 0 || l.macs > 0);
  const maxShare = Math.max(1e-9, ...rows.map((l) => l.macsShare));
  $('layers-body').innerHTML = rows.map((l) => `<tr><td>${esc(l.name)}</td><td class="l">${esc(l.opType)}</td><td class="l">${esc(shape(l.outputShape))}</td><td>${l.params.toLocaleString('en-US')}</td><td>${human(l.macs)}</td><td class="bar"><span style="width:${Math.round((160 * l.macsShare) / maxShare)}px"></span>${(100 * l.macsShare).toFixed(1)}%</td></tr>`).join('');
  $('groups-body').innerHTML = r.groups.map((g) => `<tr><td>${g.id}</td><td>${g.width}</td><td>${g.prunable}</td><td>${g.frozen}</td><td class="l">${esc(g.nodes.slice(0, 6).join(', '))}${g.nodes.length > 6 ? `, ... (${g.nodes.length})` : ''}</td></tr>`).join('');
  $('frozen').innerHTML = r.frozen.length ? r.frozen.map((f) => `<li><code>${esc(f.value)}</code> axis ${f.axis}: ${esc(f.reason)}${f.node ? ` (node ${esc(f.node)})` : ''}</li>`).join('') : '<li>none</li>';
}

function download(id: string, data: BlobPart, name: string, type: string): void {
  const a = $(id) as HTMLAnchorElement;
  const url = URL.createObjectURL(new Blob([data], { type }));
  urls.push(url);
  a.href = url;
  a.download = name;
  a.hidden = false;
}

let lastRecipe = '';
function showResult(m: Extract<FromWorker, { type: 'done' }>): void {
  $('results').hidden = false;
  const r = m.report as { macsRatio?: number; scores?: { dense?: { accuracy?: { top1: number } }; model: { accuracy?: { top1: number }; fidelity?: Record<string, { agreement?: number }> } }[] };
  const macsRatio = r.macsRatio ?? m.after.macs / Math.max(1, m.before.macs);
  $('result-macs').textContent = macsRatio.toFixed(3);
  const score = r.scores?.[r.scores.length - 1];
  const pct = (v: number | undefined) => (v === undefined ? '-' : `${(100 * v).toFixed(2)}%`);
  const top1 = score?.model.accuracy?.top1;
  $('result-top1').textContent = top1 === undefined ? '-' : pct(top1);
  $('result-latency').textContent = m.latency ? `${m.latency.after.toFixed(2)} ms` : '-';
  const agreement = score?.model.fidelity ? Object.values(score.model.fidelity)[0]?.agreement : undefined;
  const row = (what: string, a: string, b: string, kept: string) => `<tr><td>${what}</td><td>${a}</td><td>${b}</td><td>${kept}</td></tr>`;
  const ratio = (a: number, b: number) => (a > 0 ? (b / a).toFixed(3) : '-');
  $('compare-body').innerHTML = [
    row('MACs', human(m.before.macs), human(m.after.macs), macsRatio.toFixed(3)),
    row('params', human(m.before.params), human(m.after.params), ratio(m.before.params, m.after.params)),
    row('file size', bytesText(m.before.bytes), bytesText(m.after.bytes), ratio(m.before.bytes, m.after.bytes)),
    m.latency ? row(`latency (median of ${m.latency.runs}, ${m.latency.threads} thread${m.latency.threads > 1 ? 's' : ''})`, `${m.latency.before.toFixed(2)} ms`, `${m.latency.after.toFixed(2)} ms`, ratio(m.latency.before, m.latency.after)) : '',
    score ? row('top-1', pct(score.dense?.accuracy?.top1), pct(top1), '') : '',
    agreement !== undefined ? row('fidelity (top-1 agreement with dense)', '', pct(agreement), '') : '',
  ].join('');
  const base = modelName.replace(/\.onnx$/i, '');
  download('download-model', m.model, `${base}-pruned.onnx`, 'application/octet-stream');
  if (m.plan) download('download-plan', m.plan, `${base}-plan.json`, 'application/json');
  else ($('download-plan') as HTMLAnchorElement).hidden = true;
  download('download-recipe', lastRecipe, `${base}-recipe.yaml`, 'text/yaml');
  const frame = $('report-frame') as HTMLIFrameElement;
  if (m.reportHtml) {
    download('download-report', m.reportHtml, `${base}-report.html`, 'text/html');
    frame.srcdoc = m.reportHtml;
    frame.hidden = false;
  } else {
    ($('download-report') as HTMLAnchorElement).hidden = true;
    frame.hidden = true;
    frame.srcdoc = '';
  }
  const dataArgs = images.length ? ' --data calib=IMAGES_DIR --data data=IMAGES_DIR' : '';
  $('replay').textContent = `replay on the CLI:  shears run ${base}-recipe.yaml ${modelName} -o ${base}-pruned.onnx${dataArgs}`;
}

// ---- the form -> a recipe ----

const TARGETS: Record<string, [string, string][]> = {
  structured: [['macs', 'MACs (fraction kept)'], ['params', 'params (fraction kept)'], ['ratio', 'channel ratio removed'], ['latency', 'latency (fraction kept, measured in this tab)']],
  unstructured: [['sparsity', 'sparsity (fraction zeroed)']],
  nm: [['pattern', 'N:M pattern']],
};
const IMPORTANCE: Record<string, string[]> = {
  structured: ['auto', 'activation', 'l1', 'l2', 'fpgm', 'random'],
  unstructured: ['l1', 'random', 'wanda', 'sparsegpt'],
  nm: ['l1', 'random', 'wanda', 'sparsegpt'],
};
const DEFAULT_VALUE: Record<string, string> = { latency: '0.7', macs: '0.5', params: '0.5', ratio: '0.3', sparsity: '0.5', pattern: '2:4' };

function syncMode(): void {
  const mode = ($('mode') as HTMLSelectElement).value;
  const tk = $('target-kind') as HTMLSelectElement;
  tk.innerHTML = TARGETS[mode]!.map(([v, t]) => `<option value="${v}">${t}</option>`).join('');
  ($('importance') as HTMLSelectElement).innerHTML = IMPORTANCE[mode]!.map((v) => `<option>${v}</option>`).join('');
  ($('target-value') as HTMLInputElement).value = DEFAULT_VALUE[tk.value]!;
  $('round-label').hidden = mode !== 'structured';
  $('shape-label').hidden = mode !== 'structured';
}

function parseNumbers(s: string, what: string): number[] | undefined {
  if (!s.trim()) return undefined;
  const v = s.split(/[,\s]+/).filter(Boolean).map((x) => {
    const n = x.includes('/') ? Number(x.split('/')[0]) / Number(x.split('/')[1]) : Number(x);
    if (!Number.isFinite(n)) throw new Error(`${what}: '${x}' is not a number`);
    return n;
  });
  return v;
}

function dims(s: string, what: string): number | [number, number] | undefined {
  if (!s.trim()) return undefined;
  const m = /^\s*(\d+)\s*(?:[x,]\s*(\d+))?\s*$/.exec(s);
  if (!m) throw new Error(`${what}: give N or HxW, not '${s}'`);
  return m[2] ? [Number(m[1]), Number(m[2])] : Number(m[1]);
}

function buildRecipe(): { recipe: Recipe; data: Record<string, string> } {
  const mode = ($('mode') as HTMLSelectElement).value;
  const kind = ($('target-kind') as HTMLSelectElement).value;
  const value = ($('target-value') as HTMLInputElement).value.trim();
  const importance = ($('importance') as HTMLSelectElement).value;
  const hasData = images.length > 0;
  const calibSize = Number(($('calib-size') as HTMLInputElement).value) || 512;
  let prune: Record<string, unknown>;
  if (mode === 'structured') {
    const v = Number(value);
    if (!Number.isFinite(v)) throw new Error(`target value: '${value}' is not a number`);
    prune = { kind: 'prune', mode, target: { kind, value: v } };
    if (importance !== 'auto') prune['importance'] = importance;
    const shapes = ($('input-shape') as HTMLInputElement).value.trim();
    if (shapes) prune['inputShape'] = shapes.split(/\s+/);
    const roundTo = Number(($('round-to') as HTMLInputElement).value);
    if (roundTo !== 8) prune['roundTo'] = roundTo;
  } else if (mode === 'unstructured') {
    const v = Number(value);
    if (!Number.isFinite(v)) throw new Error(`sparsity: '${value}' is not a number`);
    prune = { kind: 'prune', mode, sparsity: v };
    if (importance !== 'l1') prune['method'] = importance;
  } else {
    prune = { kind: 'prune', mode, pattern: value };
    if (importance !== 'l1') prune['method'] = importance;
  }
  const calibrated = mode === 'structured' ? importance === 'auto' || importance === 'activation' : importance === 'wanda' || importance === 'sparsegpt';
  if (hasData && calibrated) prune['calib'] = '$calib';
  if (calibrated && !hasData && importance !== 'auto') throw new Error(`importance ${importance} needs images: choose a folder of images (labels = subfolder names)`);
  const steps: Record<string, unknown>[] = [prune];
  const repair = ($('repair') as HTMLInputElement).checked;
  if (repair && hasData) steps.push({ kind: 'repair', methods: ['lsq'], calib: '$calib', ...(calibSize !== 512 ? { calibSize } : {}) });
  if (hasData) steps.push({ kind: 'score', data: '$data' });
  if (($('evidence') as HTMLInputElement).checked) steps.push({ kind: 'report', ...(hasData ? { data: '$data' } : {}) });
  const pp: Record<string, unknown> = {};
  const scale = parseNumbers(($('pp-scale') as HTMLInputElement).value, 'scale');
  if (scale) pp['scale'] = scale[0];
  const mean = parseNumbers(($('pp-mean') as HTMLInputElement).value, 'mean');
  if (mean) pp['mean'] = mean;
  const std = parseNumbers(($('pp-std') as HTMLInputElement).value, 'std');
  if (std) pp['std'] = std;
  const resize = dims(($('pp-resize') as HTMLInputElement).value, 'resize');
  if (resize !== undefined) pp['resize'] = resize;
  const crop = dims(($('pp-crop') as HTMLInputElement).value, 'crop');
  if (crop !== undefined) pp['crop'] = typeof crop === 'number' ? [crop, crop] : crop;
  const color = ($('pp-color') as HTMLSelectElement).value;
  if (color) pp['color'] = color;
  const layout = ($('pp-layout') as HTMLSelectElement).value;
  if (layout) pp['layout'] = layout;
  const raw = { format: 'shears.recipe', version: 1, ...(hasData && Object.keys(pp).length ? { preprocess: pp } : {}), steps: steps as unknown as Step[] };
  const recipe = validateRecipe(raw, 'the form');
  return { recipe, data: hasData ? { calib: '/data', data: '/data' } : {} };
}

// ---- events ----

async function chooseModel(chosen: File[]): Promise<void> {
  setError('');
  const models = chosen.filter((f) => /\.onnx$/i.test(f.name));
  if (models.length !== 1) {
    setError(models.length ? `choose one .onnx model (and its external data files), not ${models.length} models` : `no .onnx file among ${chosen.map((f) => f.name).join(', ')}`);
    return;
  }
  const file = models[0]!;
  externalFiles = chosen.filter((f) => f !== file);
  $('results').hidden = true;
  delete document.body.dataset['done'];
  delete document.body.dataset['inspected'];
  modelName = file.name;
  modelBytes = await file.arrayBuffer();
  setBusy(true, `inspecting ${file.name} ...`);
  const copy = modelBytes.slice(0);
  const external = await readExternal();
  send({ type: 'inspect', name: file.name, bytes: copy, external, threads: THREADS }, [copy, ...external.map((e) => e.bytes)]);
}

const IMAGE = /\.(png|jpe?g)$/i;
/** Chosen images with their paths relative to the chosen folder's parent ('fmnist/3/x.png'). */
function chooseImages(chosen: { file: File; rel: string }[]): void {
  setError('');
  const imgs = chosen.filter((x) => IMAGE.test(x.rel));
  const skipped = chosen.length - imgs.length;
  images = imgs.map(({ file, rel }) => {
    const parts = rel.split('/').filter(Boolean);
    // drop the chosen folder's own name: '/data/<class>/<file>'
    return { path: `/data/${(parts.length > 1 ? parts.slice(1) : parts).join('/')}`, file };
  });
  const files = chosen;
  const classes = new Set(images.map((i) => i.path.split('/')[2]).filter((c) => c && images.some((x) => x.path.split('/').length > 3)));
  if (files.length && !images.length) {
    setError(`no images among the ${files.length} file(s) chosen: give a folder of PNG or JPEG images, one subfolder per class`);
  }
  $('data-summary').textContent = images.length ? `${images.length} images, ${classes.size} classes${skipped ? `, ${skipped} other files ignored` : ''}` : '';
}

async function readExternal(): Promise<{ name: string; bytes: ArrayBuffer }[]> {
  return Promise.all(externalFiles.map(async (f) => ({ name: f.name, bytes: await f.arrayBuffer() })));
}

async function run(): Promise<void> {
  if (!modelBytes || busy) return;
  setError('');
  let built;
  try {
    built = buildRecipe();
  } catch (e) {
    setError((e as Error).message);
    return;
  }
  lastRecipe = formatRecipe(built.recipe, 'studio.yaml');
  $('log').textContent = '';
  $('results').hidden = true;
  delete document.body.dataset['done'];
  $progress().value = 0;
  setBusy(true, 'reading images ...');
  const files = await Promise.all(images.map(async (i) => ({ path: i.path, bytes: await i.file.arrayBuffer() })));
  const model = modelBytes.slice(0);
  const external = await readExternal();
  send({ type: 'run', threads: THREADS, name: modelName, model, external, recipe: lastRecipe, data: built.data, files, latency: ($('latency') as HTMLInputElement).checked }, [model, ...external.map((e) => e.bytes), ...files.map((f) => f.bytes)]);
  setBusy(true, 'running ...');
}

function cancel(): void {
  if (!busy) return;
  restartWorker();
  $progress().value = 0;
  setBusy(false, 'cancelled');
  log('cancelled');
}

$('model-input').addEventListener('change', (e) => {
  const files = [...((e.target as HTMLInputElement).files ?? [])];
  if (files.length) void chooseModel(files);
});
$('data-input').addEventListener('change', (e) => chooseImages([...((e.target as HTMLInputElement).files ?? [])].map((file) => ({ file, rel: file.webkitRelativePath || file.name }))));

/** The files under dropped entries (folders read recursively), with their paths. */
async function droppedFiles(items: DataTransferItemList): Promise<{ file: File; rel: string }[]> {
  const out: { file: File; rel: string }[] = [];
  const walk = async (entry: FileSystemEntry, prefix: string): Promise<void> => {
    if (entry.isFile) {
      const file = await new Promise<File>((resolve, reject) => (entry as FileSystemFileEntry).file(resolve, reject));
      out.push({ file, rel: `${prefix}${entry.name}` });
      return;
    }
    const reader = (entry as FileSystemDirectoryEntry).createReader();
    for (;;) {
      const batch = await new Promise<FileSystemEntry[]>((resolve, reject) => reader.readEntries(resolve, reject));
      if (!batch.length) break;
      for (const e of batch) await walk(e, `${prefix}${entry.name}/`);
    }
  };
  const entries = [...items].map((i) => i.webkitGetAsEntry()).filter((e): e is FileSystemEntry => e !== null);
  for (const e of entries) await walk(e, '');
  return out;
}
/** A drop zone: highlighted while something is dragged over it; `take` gets what is dropped when the page is idle. */
function dropZone(id: string, take: (dt: DataTransfer) => void): void {
  const zone = $(id);
  zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    if (!busy && e.dataTransfer) take(e.dataTransfer);
  });
}
dropZone('data-drop', (dt) => {
  droppedFiles(dt.items).then(chooseImages, (err: Error) => setError(`cannot read the dropped folder: ${err.message}`));
});
$('mode').addEventListener('change', syncMode);
$('target-kind').addEventListener('change', () => {
  ($('target-value') as HTMLInputElement).value = DEFAULT_VALUE[($('target-kind') as HTMLSelectElement).value]!;
});
$('run-button').addEventListener('click', () => void run());
$('cancel-button').addEventListener('click', cancel);
dropZone('drop', (dt) => {
  const files = [...dt.files];
  if (files.length) void chooseModel(files);
});

syncMode();
startWorker();
setBusy(false);
$('engine').textContent = `onnxruntime-web (wasm), ${self.crossOriginIsolated ? `${THREADS} thread${THREADS > 1 ? 's' : ''}` : '1 thread (page not cross-origin isolated)'}`;
document.body.dataset['ready'] = 'true';
