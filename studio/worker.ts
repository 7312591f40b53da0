/**
 * The studio's Web Worker: all shears work runs here, so the page never freezes, and the cancel button ends it
 * by terminating this worker. It installs the browser seams once (onnxruntime-web's wasm backend, files from
 * memory), then answers two messages: `inspect` (summary, per-layer table, dependency groups) and `run` (a
 * recipe through runPipeline, then latency of the dense and the final model measured with onnxruntime-web).
 */
import * as ort from 'onnxruntime-web';
import wasmUrl from '../node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm?url';
import mjsUrl from '../node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.mjs?url';
import chartJs from '../node_modules/chart.js/dist/chart.umd.min.js?raw';
import { foldModel } from '../src/analysis/fold.js';
import { assertRunnableOps, inspectModel } from '../src/analysis/inspect.js';
import { analyzeModel } from '../src/depgraph/analyze.js';
import type { Dim, Model } from '../src/ir/graph.js';
import { encodeModel, type ExternalReader } from '../src/onnx/codec.js';
import { ShearsError } from '../src/errors.js';
import { parseModelBytes } from '../src/onnx/parse.js';
import { setPlatform } from '../src/fs/platform.js';
import { measureLatencies } from '../src/metrics/latency.js';
import { renderEvidenceHtml } from '../src/report/html.js';
import { formatMessage } from '../src/pipeline/events.js';
import { parseRecipe } from '../src/pipeline/recipe.js';
import { runPipeline } from '../src/pipeline/run.js';
import { setRuntime } from '../src/runtime/runtime.js';
import { webRuntime } from '../src/runtime/web.js';
import { pageOpenData } from './data.js';
import { memoryPlatform } from './platform.js';
import type { FromWorker, InspectResult, ToWorker } from './protocol.js';

// data/image.ts hands pngjs a Buffer view of the bytes; the stand-in decoder (png.ts) takes the Uint8Array itself
(globalThis as { Buffer?: unknown }).Buffer ??= { from: (b: ArrayBuffer, o: number, l: number) => new Uint8Array(b, o, l) };

const post = (m: FromWorker, transfer: Transferable[] = []) => (self as unknown as Worker).postMessage(m, transfer);

let configured = false;
function configure(threads: number): void {
  if (configured) return;
  ort.env.wasm.wasmPaths = { wasm: new URL(wasmUrl, self.location.href).href, mjs: new URL(mjsUrl, self.location.href).href };
  // threads need SharedArrayBuffer, i.e. a cross-origin isolated page (COOP/COEP headers, as `shears studio` sends)
  ort.env.wasm.numThreads = self.crossOriginIsolated ? threads : 1;
  ort.env.wasm.simd = true;
  setRuntime(webRuntime);
  configured = true;
}

/** Input shapes with symbolic dims fixed to 1 (as `shears inspect` does without --input-shape). */
function staticShapes(model: Model): Record<string, Dim[]> {
  const out: Record<string, Dim[]> = {};
  for (const i of model.graph.inputs) {
    if (model.graph.initializers.has(i.name) || !i.type?.shape) continue;
    out[i.name] = i.type.shape.map((d) => (typeof d === 'number' ? d : 1));
  }
  return out;
}

const errorMessage = (e: unknown): string => {
  const err = e as Error;
  if (err?.name === 'RangeError' && /allocation failed|Invalid array length|Invalid typed array length/.test(err.message)) return `out of memory in this tab (${err.message}): the model is too large for the browser`;
  if (err instanceof WebAssembly.RuntimeError || /memory access out of bounds|Out of memory|failed to allocate/i.test(String(err?.message))) return `onnxruntime-web ran out of memory (${err.message}): the model is too large for the tab`;
  return err?.message ?? String(e);
};

/**
 * Reads external data from the files chosen with the model (by the location's file name): the page's
 * stand-in for the files beside a model on disk.
 */
function externalReader(files: { name: string; bytes: ArrayBuffer }[]): ExternalReader {
  const byName = new Map(files.map((f) => [f.name, new Uint8Array(f.bytes)]));
  return (location, offset, length, tensor) => {
    const base = location.split(/[\\/]/).pop()!;
    const f = byName.get(base);
    if (!f) throw new ShearsError(`tensor '${tensor}' has its data in '${location}': choose that file together with the model (both at once in the file picker)`);
    if (offset + length > f.length) throw new ShearsError(`tensor '${tensor}': '${base}' has ${f.length} bytes, the data asked for ends at ${offset + length} (truncated or the wrong file?)`);
    return f.subarray(offset, offset + length);
  };
}

/** The model of a message: its bytes, with its external data from the files chosen with it. */
function parse(name: string, bytes: Uint8Array, external: { name: string; bytes: ArrayBuffer }[]): Model {
  return parseModelBytes(bytes, { fileName: name }, { decode: { readExternal: externalReader(external) } });
}

async function inspect(name: string, bytes: Uint8Array, external: { name: string; bytes: ArrayBuffer }[]): Promise<InspectResult> {
  const t0 = performance.now();
  const model = parse(name, bytes, external);
  assertRunnableOps(model);
  const shapes = staticShapes(model);
  const folded = await foldModel(model, { inputShapes: shapes });
  const report = inspectModel(model, shapes, new Set(folded.created));
  let groups: InspectResult['groups'] = [];
  let frozen: InspectResult['frozen'] = [];
  let groupsError: string | undefined;
  try {
    const a = analyzeModel(model, { inputShapes: shapes, notParameters: new Set(folded.created) });
    groups = a.dg.groups.map((g) => ({
      id: g.id,
      width: g.units.length + g.frozenUnits,
      prunable: g.units.length,
      frozen: g.frozenUnits,
      nodes: g.nodes,
    }));
    frozen = a.dg.frozen.map((f) => ({ value: f.value, axis: f.axis, reason: f.reason, ...(f.node ? { node: f.node } : {}) }));
  } catch (e) {
    groupsError = errorMessage(e);
  }
  return {
    name,
    fileBytes: bytes.length,
    report: JSON.parse(JSON.stringify(report)) as InspectResult['report'],
    groups,
    frozen,
    ...(groupsError ? { groupsError } : {}),
    ms: performance.now() - t0,
  };
}

self.onmessage = async (ev: MessageEvent<ToWorker>) => {
  const msg = ev.data;
  try {
    configure(msg.threads);
    if (msg.type === 'inspect') {
      post({ type: 'inspected', result: await inspect(msg.name, new Uint8Array(msg.bytes), msg.external) });
      return;
    }
    const t0 = performance.now();
    const inputBytes = new Uint8Array(msg.model);
    const model = parse(msg.name, inputBytes, msg.external);
    const files = new Map<string, Uint8Array>();
    for (const f of msg.files) files.set(f.path, new Uint8Array(f.bytes));
    setPlatform(memoryPlatform(files, { 'chart.umd.min.js': chartJs }));
    const recipe = parseRecipe(msg.recipe, 'studio recipe');
    const nSteps = recipe.steps.length + (msg.latency ? 1 : 0);
    let stepIndex = 0;
    const result = await runPipeline(model, recipe, {
      openData: pageOpenData((line) => post({ type: 'progress', fraction: 0, step: 'data', message: line, kind: 'info' })),
      inputBytes,
      data: msg.data,
      onProgress: (e) => {
        if (e.type === 'start') stepIndex = Math.max(0, e.index);
        const within = e.type === 'progress' && e.total > 0 ? e.done / e.total : 0;
        const text = 'message' in e ? formatMessage(e.message) : e.type === 'start' ? `${e.step} ...` : '';
        post({ type: 'progress', fraction: (stepIndex + within) / nSteps, step: e.step, message: text, kind: e.type });
      },
    });
    const pipelineMs = performance.now() - t0;
    const outBytes = encodeModel(result.model);
    const shapes = staticShapes(result.model);
    const after = inspectModel(result.model, shapes);
    const before = inspectModel(model, staticShapes(model));
    let latency: { before: number; after: number; runs: number; threads: number } | undefined;
    if (msg.latency) {
      post({ type: 'progress', fraction: (nSteps - 1) / nSteps, step: 'latency', message: 'measuring latency (onnxruntime-web) ...', kind: 'start' });
      const [l0, l1] = await measureLatencies([model, result.model], { warmup: 3, runs: 15 });
      latency = { before: l0!.median, after: l1!.median, runs: 15, threads: ort.env.wasm.numThreads ?? 1 };
    }
    const reportHtml = result.report.evidence ? renderEvidenceHtml(result.report.evidence) : undefined;
    const plan = result.plan ? JSON.stringify(result.plan, null, 2) : undefined;
    const copy = outBytes.slice().buffer;
    post({
      type: 'done',
      model: copy,
      ...(plan ? { plan } : {}),
      ...(reportHtml ? { reportHtml } : {}),
      report: JSON.parse(JSON.stringify(result.report)) as Record<string, unknown>,
      before: { macs: before.macs, params: before.params, bytes: inputBytes.length },
      after: { macs: after.macs, params: after.params, bytes: outBytes.length },
      ...(latency ? { latency } : {}),
      ms: pipelineMs,
      threads: ort.env.wasm.numThreads ?? 1,
    }, [copy]);
  } catch (e) {
    post({ type: 'error', message: errorMessage(e) });
  }
};
