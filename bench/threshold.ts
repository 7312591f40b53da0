/**
 * Global magnitude threshold over 100M float32 weights (100 layers of 1M, Gaussian): time of the exact radix
 * select (2 histogram passes), of building the keep-masks (1 pass), and the same ranking only among survivors
 * of an earlier 50% mask. For contrast, a native Float32Array sort of |w| for 10M weights.
 * Usage: node dist/bench/threshold.js [totalWeights=1e8] [sparsity=0.7]
 */
import { countCandidates, dropSelected, selectSmallest, type SelectInput } from '../src/sparsity/select.js';
import { rng } from '../src/random.js';

const total = Number(process.argv[2] ?? 1e8);
const sparsity = Number(process.argv[3] ?? 0.7);
const perLayer = 1_000_000;
const layers = Math.ceil(total / perLayer);
const next = rng(42);

const t0 = performance.now();
const inputs: SelectInput[] = [];
for (let l = 0; l < layers; l++) {
  const n = Math.min(perLayer, total - l * perLayer);
  const v = new Float32Array(n);
  const scale = 0.01 + 0.2 * next();
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(next() + 1e-12)) * scale;
    const a = 2 * Math.PI * next();
    v[i] = r * Math.cos(a);
    if (i + 1 < n) v[i + 1] = r * Math.sin(a);
  }
  inputs.push({ values: v });
}
const genMs = performance.now() - t0;

const cpu: Record<string, number> = {};
/** Wall-clock ms of f; its CPU ms (user + system, this process) go to cpu[label]. */
function time<T>(f: () => T, label?: string): [T, number] {
  const c = process.cpuUsage();
  const s = performance.now();
  const r = f();
  const wall = performance.now() - s;
  const d = process.cpuUsage(c);
  if (label) cpu[label] = Math.round((d.user + d.system) / 1000);
  return [r, wall];
}

const n = countCandidates(inputs);
const k = Math.round(sparsity * n);
const [t, selectMs] = time(() => selectSmallest(inputs, k), 'select');
const [masks, maskMs] = time(() => dropSelected(inputs, t), 'buildMasks');
let pruned = 0;
for (const m of masks) for (let i = 0; i < m.length; i++) pruned += 1 - m[i]!;

// iterative: rank only survivors of a previous 50% mask
const half = dropSelected(inputs, selectSmallest(inputs, Math.round(0.5 * n)));
const masked: SelectInput[] = inputs.map((inp, i) => ({ values: inp.values, keep: half[i]! }));
const [survivors, countMs] = time(() => countCandidates(masked));
const [t2, select2Ms] = time(() => selectSmallest(masked, Math.round(0.5 * survivors)), 'selectAmongSurvivors');
const [, mask2Ms] = time(() => dropSelected(masked, t2));

const sortN = Math.min(n, 10_000_000);
const abs = new Float32Array(sortN);
for (let i = 0, l = 0; i < sortN; l++) {
  const v = inputs[l]!.values;
  for (let j = 0; j < v.length && i < sortN; j++) abs[i++] = Math.abs(v[j]!);
}
const [, sortMs] = time(() => abs.sort());

console.log(JSON.stringify({
  weights: n,
  layers,
  sparsity,
  k,
  threshold: t.value,
  prunedExactly: pruned === k,
  generateMs: Math.round(genMs),
  selectMs: Math.round(selectMs),
  buildMasksMs: Math.round(maskMs),
  selectPlusMasksMs: Math.round(selectMs + maskMs),
  withExistingMask: { survivors, countMs: Math.round(countMs), selectMs: Math.round(select2Ms), buildMasksMs: Math.round(mask2Ms) },
  nativeSortOf10MAbsMs: Math.round(sortMs),
  cpuMs: cpu,
  loadAverage: (await import('node:os')).loadavg().map((x) => +x.toFixed(2)),
  node: process.version,
}, null, 2));
