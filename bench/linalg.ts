/**
 * OBS / SparseGPT linear algebra: JavaScript (solve.ts obsPrune, linalg.ts) against onnxruntime float64 graphs
 * (repair/ort-linalg.ts), on random layer problems of TinyLlama-1.1B shapes (H from 4096 random patches, the
 * 32 x 128-token calibration of the issue). Prints one JSON object (CPU model, load average, seconds).
 *   node dist/bench/linalg.js [--js-max-k K] [--fit] [--sizes 688x256,2048x2048,...] [--threads T]
 * --js-max-k: run the JavaScript path only up to this K (default 2048; 5632 takes minutes).
 * --fit: also time the least-squares start (repair's fitFirst) at each size.
 */
import { cpus, loadavg } from 'node:os';
import { readFileSync } from 'node:fs';
import { reversedFactor, upperInverse } from '../src/repair/linalg.js';
import { obsPruneOrt, OrtLinalg } from '../src/repair/ort-linalg.js';
import { obsPrune, type GroupProblem, type MaskRule } from '../src/repair/solve.js';
import { mixedSeedRng } from '../src/random.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1]! : dflt;
}
const JS_MAX_K = Number(arg('--js-max-k', '2048'));
const FIT = process.argv.includes('--fit');
const THREADS = Number(arg('--threads', '0')) || undefined;
const SIZES = arg('--sizes', '688x256,2048x256,2048x2048,2048x5632,5632x2048').split(',').map((s) => s.split('x').map(Number) as [number, number]);
const SAMPLES = 4096;

function cpuModel(): string {
  try {
    return /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]!.model;
  } catch {
    return cpus()[0]?.model ?? 'unknown';
  }
}

function randn(n: number, seed: number): Float64Array {
  const r = mixedSeedRng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(Math.max(r(), 1e-12))) * Math.cos(2 * Math.PI * r());
  return out;
}

async function problem(la: OrtLinalg, k: number, rows: number, seed: number): Promise<{ p: GroupProblem; w0: Float64Array }> {
  // patches with unequal column scales (as activations have), H = X X^T computed in onnxruntime (not timed)
  const x = randn(k * SAMPLES, seed);
  for (let i = 0; i < k; i++) {
    const s = 0.2 + (i % 13) * 0.3;
    for (let t = 0; t < SAMPLES; t++) x[i * SAMPLES + t]! *= s;
  }
  const xt = new Float64Array(SAMPLES * k);
  for (let i = 0; i < k; i++) for (let t = 0; t < SAMPLES; t++) xt[t * k + i] = x[i * SAMPLES + t]!;
  const h = await la.matmul(x, k, SAMPLES, xt, k);
  const w0 = randn(rows * k, seed + 1);
  // C for the least-squares start: H W0^T (the dense outputs of W0)
  const wt = new Float64Array(k * rows);
  for (let r = 0; r < rows; r++) for (let j = 0; j < k; j++) wt[j * rows + r] = w0[r * k + j]!;
  const c = FIT ? await la.matmul(h, k, k, wt, rows) : undefined;
  return { p: { k, bias: false, rows, h, ...(c ? { c } : {}) }, w0 };
}

function compare(a: { w: Float64Array; keep: Uint8Array }, b: { w: Float64Array; keep: Uint8Array }) {
  let maskDiff = 0;
  for (let i = 0; i < a.keep.length; i++) if (a.keep[i] !== b.keep[i]) maskDiff++;
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.w.length; i++) {
    d = Math.max(d, Math.abs(a.w[i]! - b.w[i]!));
    m = Math.max(m, Math.abs(a.w[i]!));
  }
  return { maskDiff, relWeightDiff: d / m };
}

const secs = (t0: number) => Number(((performance.now() - t0) / 1000).toFixed(3));

async function main() {
  const out: Record<string, unknown> = {
    cpu: cpuModel(), cores: cpus().length, node: process.version, threads: THREADS ?? 'onnxruntime default',
    samples: SAMPLES, damp: 0.01, loadavgStart: loadavg().map((v) => Number(v.toFixed(2))),
  };
  const la = new OrtLinalg(THREADS ? { threads: THREADS } : {});
  const results: Record<string, unknown>[] = [];
  out['results'] = results;
  try {
    for (const [k, rows] of SIZES) {
      const { p, w0 } = await problem(la, k, rows, k + rows);
      const row: Record<string, unknown> = { k, n: rows };
      results.push(row);
      const js = k <= JS_MAX_K;
      // the Cholesky alone (U with U^T U = (H + lambda I)^-1), once per K
      if (!results.some((r) => r !== row && r['k'] === k && r['choleskyOrt'] !== undefined)) {
        let t0 = performance.now();
        await la.dampedUpperInverse(p.h, k, 0.01);
        row['choleskyOrt'] = secs(t0);
        // (above K 4096 the JavaScript factor is timed inside obsPrune only: minutes)
        if (js && k <= 4096) {
          t0 = performance.now();
          upperInverse(reversedFactor(p.h, k, 0.01));
          row['choleskyJs'] = secs(t0);
        }
      }
      const rules: [string, MaskRule][] = [
        ['unstructured50', { kind: 'count', prune: Math.round(0.5 * rows * k) }],
        ['nm24', { kind: 'nm', n: 2, m: 4, channels: k, kernel: 1 }],
      ];
      for (const [name, rule] of rules) {
        for (const fitFirst of FIT ? [false, true] : [false]) {
          const tag = `${name}${fitFirst ? '_fit' : ''}`;
          let t0 = performance.now();
          const o = await obsPruneOrt(p, w0, rule, 0.01, { fitFirst, linalg: la });
          row[`${tag}Ort`] = secs(t0);
          // the JavaScript path: unstructured always (when K allows), 2:4 only below K 5632 (the same factor)
          if (js && (name === 'unstructured50' || k < 5632)) {
            t0 = performance.now();
            const j = obsPrune(p, w0, rule, 0.01, { fitFirst });
            row[`${tag}Js`] = secs(t0);
            row[`${tag}Check`] = compare(j, o);
          }
          process.stderr.write(`${JSON.stringify(row)}\n`);
        }
      }
    }
  } finally {
    await la.release();
  }
  out['loadavgEnd'] = loadavg().map((v) => Number(v.toFixed(2)));
  out['peakRssMB'] = Math.round(process.resourceUsage().maxRSS / 1024);
  // TinyLlama-1.1B SparseGPT estimate: per block q, o (2048x2048), k, v (2048x256), gate, up (2048x5632), down (5632x2048)
  const get = (k: number, n: number) => results.find((r) => r['k'] === k && r['n'] === n)?.['unstructured50Ort'] as number | undefined;
  const parts = [get(2048, 2048), get(2048, 256), get(2048, 5632), get(5632, 2048)];
  if (parts.every((v) => v !== undefined)) {
    const [qo, kv, gu, down] = parts as number[];
    const perBlock = 2 * qo + 2 * kv + 2 * gu + down;
    out['tinyLlamaEstimate'] = { perBlockSeconds: Number(perBlock.toFixed(1)), blocks22Minutes: Number(((22 * perBlock) / 60).toFixed(1)), note: 'obsPruneOrt only (unstructured 50%, no least-squares start), excluding calibration passes' };
  }
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

await main();
