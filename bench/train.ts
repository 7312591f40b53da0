/**
 * Training benchmarks on fmnist_resnet20 + Fashion-MNIST (reads ../shared). Prints one JSON object.
 *   node dist/bench/train.js throughput [--rounds N] [--steps S] [--threads T] [--replicas R] [--variants one,plain,r<R>]
 *                                       [--only folded|bn] [--no-torch] [--no-profile] [--profile-runs N] [--no-nchwc]
 *   node dist/bench/train.js scratch            1 epoch from scratch, README recipe (one-cycle 0.2, BN fresh)
 *   node dist/bench/train.js unstructured90     global L1 90% + 1 epoch fine-tune (masks enforced); --scope lamp|layer
 *   node dist/bench/train.js structured50       structured to 50% MACs (L2) + 2 epochs fine-tune [--round-to N]
 * Throughput prints the CPU model, the ISA flags onnxruntime's MLAS kernels depend on and the NCHWc block, then
 * for the model as exported (BN folded) and with BatchNorm re-inserted: the trainer's step (data-parallel
 * replicas in worker threads, Convs on onnxruntime's NCHWc kernels) timed in N interleaved rounds of S steps
 * with the PyTorch reference step (bench/torch_ref.py under /usr/bin/python3, same architecture, batch and
 * threads; skipped with a note when torch is missing), images/s of both and their ratio per round, the load
 * average of each round, and onnxruntime's profile of one replica's step (by op type, phase, slowest nodes).
 * --variants adds, to the same rounds, one session in this thread ('one'), one without NCHWc ('plain') and other
 * replica counts ('r1', 'r4'); --replicas R overrides the trainer's default, --no-nchwc drops the NCHWc lowering.
 * --model F.onnx: export-step of another model than fmnist_resnet20 (e.g. a pruned copy, 1x28x28 input);
 * --wgrad-fold 0: export-step with the per-image weight-gradient products (src/ops/grad/conv.ts WGRAD_FOLD), to A/B.
 * Options: --epochs E, --limit N (train samples), --bn reinsert (default; BN statistics from the dense model)|none,
 *          --kd (teacher = dense model), --objective match-teacher (no labels: MSE to the dense model's logits),
 *          --lr X, --seed S, --replicas R
 */
import { cpus, loadavg, tmpdir } from 'node:os';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel } from '../src/onnx/io.js';
import { WGRAD_FOLD } from '../src/ops/grad/conv.js';
import { openDataset } from '../src/data/spec.js';
import { buildTrainingGraph } from '../src/autodiff/training.js';
import { cloneModel } from '../src/ir/clone.js';
import { probeTypes } from '../src/autodiff/shapes.js';
import { createSession } from '../src/runtime/session.js';
import { lowerNchwc, nchwcBlock } from '../src/autodiff/nchwc.js';
import { ReplicaCore } from '../src/train/replica-core.js';
import { loadArrays, type ArrayData } from '../src/data/in-memory.js';
import { evaluateAccuracy, finetune, type FinetuneOptions } from '../src/train/trainer.js';
import { createStepRunner, defaultReplicas, stepGraphOf } from '../src/train/step-runner.js';
import { decomposeBatchNormForTraining, insertBatchNorm } from '../src/train/bn.js';
import type { Tensor } from '../src/ir/tensor.js';
import type { Model } from '../src/ir/graph.js';

const args = process.argv.slice(2);
const mode = args[0] ?? 'throughput';
const opt = (k: string, d?: string) => {
  const i = args.indexOf(`--${k}`);
  return i >= 0 ? args[i + 1] : d;
};
const flag = (k: string) => args.includes(`--${k}`);
const shared = ['../shared', '/work/shared'].find((p) => existsSync(`${p}/models/fmnist_resnet20.onnx`)) ?? '../shared';
const modelPath = opt('model') ?? (existsSync(`${shared}/models/fmnist_resnet20.onnx`) ? `${shared}/models/fmnist_resnet20.onnx` : 'test/fixtures/models/fmnist_resnet20.onnx');
const threads = Number(opt('threads', String(cpus().length)));
// Spin-waiting threads inflate CPU time (and slow other processes on a shared machine): off unless --spin.
const spin = flag('spin');
let torchVersion: string | undefined;
const pp = { scale: 1 / 255, mean: [0.286], std: [0.353] };

async function data(): Promise<{ train: ArrayData; test: ArrayData }> {
  const limit = opt('limit') ? Number(opt('limit')) : undefined;
  const train = await loadArrays(openDataset(`idx:${shared}/data/fashion-mnist@train`, pp), limit);
  const test = await loadArrays(openDataset(`idx:${shared}/data/fashion-mnist@t10k`, pp));
  return { train, test };
}

function rss(): number {
  return Math.round(process.memoryUsage().rss / 2 ** 20);
}

/** A step runner for the training graph of `model` at batch B split over R replicas (as the trainer builds it). */
async function stepRunner(model: Model, B: number, R: number, nchwc: boolean) {
  const m = cloneModel(model);
  const shape = [B / R, 1, 28, 28];
  const pre = await probeTypes(m, { input: shape });
  const state = decomposeBatchNormForTraining(m, pre.shapes);
  const t0 = performance.now();
  const tg = await buildTrainingGraph(m, { batch: B / R, loss: { ce: {} }, state });
  const buildMs = performance.now() - t0;
  const low = nchwc ? await lowerNchwc(tg.model) : { model: tg.model, lowered: 0 };
  const runner = await createStepRunner(stepGraphOf(tg, low.model, { input: 'input', sampleDims: [1, 28, 28], classes: 10 }), { batch: B, replicas: R, threads, spin });
  tg.params.forEach((p, k) => runner.params[k]!.set(p.init.data as Float32Array));
  tg.state.forEach((s, k) => runner.state[k]!.set(s.init.data as Float32Array));
  return { runner, buildMs, nodes: tg.model.graph.nodes.length, lowered: low.lowered };
}

/** The CPU as /proc/cpuinfo names it, with the ISA flags that decide onnxruntime's MLAS kernels. */
function cpuInfo(): Record<string, unknown> {
  let first = '';
  try {
    first = readFileSync('/proc/cpuinfo', 'utf8').split('\n\n')[0] ?? '';
  } catch {
    return { model: cpus()[0]?.model, note: 'no /proc/cpuinfo' };
  }
  const get = (k: string) => first.match(new RegExp(`^${k}\\s*:\\s*(.*)$`, 'm'))?.[1]?.trim();
  const flags = new Set((get('flags') ?? '').split(/\s+/));
  const names = ['avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'avx_vnni', 'amx_tile', 'amx_bf16', 'amx_int8'];
  const isa = names.filter((f) => flags.has(f));
  // MLAS picks its float SGEMM/NCHWc kernels by AVX-512F, else AVX2+FMA; VNNI/BF16/AMX only matter to int8/bf16.
  const mlasFloat = flags.has('avx512f') ? 'AVX-512F kernels (NCHWc block 16)' : flags.has('avx2') && flags.has('fma') ? 'AVX2/FMA3 kernels (NCHWc block 8)' : 'SSE kernels';
  return { model: get('model name'), vendor: get('vendor_id'), family: get('cpu family'), modelNumber: get('model'), isa, mlasFloat, cores: cpus().length };
}

/** The PyTorch reference step (bench/torch_ref.py) in a python3 child that runs steps when asked. */
class TorchRef {
  private lines: string[] = [];
  private waiters: ((l: string) => void)[] = [];
  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    createInterface({ input: child.stdout }).on('line', (l) => {
      const w = this.waiters.shift();
      if (w) w(l);
      else this.lines.push(l);
    });
    child.on('exit', () => this.waiters.splice(0).forEach((w) => w('{"error":"python exited"}')));
  }
  private next(): Promise<string> {
    const l = this.lines.shift();
    return l !== undefined ? Promise.resolve(l) : new Promise((r) => this.waiters.push(r));
  }
  static available(): string | undefined {
    const r = spawnSync(PYTHON, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
    return r.status === 0 ? r.stdout.trim() : undefined;
  }
  static async start(bn: boolean, threads: number, batch: number): Promise<{ ref: TorchRef; info: Record<string, unknown> }> {
    const script = fileURLToPath(new URL('../../bench/torch_ref.py', import.meta.url));
    const child = spawn(PYTHON, [script, '--threads', String(threads), '--batch', String(batch), ...(bn ? ['--bn'] : [])]);
    let err = '';
    child.stderr.on('data', (d) => (err += String(d)));
    const ref = new TorchRef(child);
    const info = JSON.parse(await ref.next()) as Record<string, unknown>;
    if (!info['ready']) throw new Error(`torch_ref.py did not start: ${err}`);
    return { ref, info };
  }
  /** Runs n steps; their wall ms and process CPU ms. */
  async steps(n: number): Promise<{ ms: number[]; cpuMs: number[] }> {
    this.child.stdin.write(`STEPS ${n}\n`);
    const r = JSON.parse(await this.next()) as { ms?: number[]; cpuMs?: number[]; error?: string };
    if (!r.ms || !r.cpuMs) throw new Error(`torch_ref.py: ${r.error ?? 'no timings'}`);
    return { ms: r.ms, cpuMs: r.cpuMs };
  }
  /** n steps under PyTorch's profiler: wall ms per step, self CPU ms per step, the slowest ops. */
  async profile(n: number): Promise<{ stepMs: number; selfCpuMs: number; byOp: { op: string; ms: number; calls: number }[] }> {
    this.child.stdin.write(`PROFILE ${n}\n`);
    return JSON.parse(await this.next()) as { stepMs: number; selfCpuMs: number; byOp: { op: string; ms: number; calls: number }[] };
  }
  close(): void {
    this.child.stdin.end('QUIT\n');
  }
}

const PYTHON = '/usr/bin/python3';
const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
const r1 = (v: number) => +v.toFixed(1);
const r2 = (v: number) => +v.toFixed(2);

/**
 * onnxruntime's profile of one replica's training step (batch / R samples, threads / R threads: what each
 * worker runs), over `runs` steps after two warm-up steps: node time by op type, by phase (forward, backward =
 * nodes of gradient rules, loss) and the slowest nodes.
 */
async function profileStep(model: Model, B: number, R: number, nchwc: boolean, runs: number) {
  const micro = B / R;
  const t = Math.max(1, Math.floor(threads / R));
  const m = cloneModel(model);
  const pre = await probeTypes(m, { input: [micro, 1, 28, 28] });
  const state = decomposeBatchNormForTraining(m, pre.shapes);
  const tg = await buildTrainingGraph(m, { batch: micro, loss: { ce: {} }, state });
  const low = nchwc ? await lowerNchwc(tg.model) : { model: tg.model };
  const graph = stepGraphOf(tg, low.model, { input: 'input', sampleDims: [1, 28, 28], classes: 10 });
  const dir = mkdtempSync(join(tmpdir(), 'shears-profile-'));
  const session = await createSession(low.model, { threads: t, spin, profile: join(dir, 'step') });
  const core = new ReplicaCore(session, undefined, graph, micro, 1);
  const size = (d: number[]) => d.reduce((a, b) => a * b, 1);
  const values = new Float32Array([...tg.params, ...tg.state].reduce((a, p) => a + size(p.init.dims), 0));
  let o = 0;
  for (const p of [...tg.params, ...tg.state]) {
    values.set(p.init.data as Float32Array, o);
    o += size(p.init.dims);
  }
  const io = {
    values,
    x: Float32Array.from({ length: micro * 784 }, () => Math.random() * 2 - 1),
    targets: Float32Array.from({ length: micro * 10 }, (_, i) => (i % 10 === Math.floor(i / 10) % 10 ? 1 : 0)),
    output: new Float32Array(micro * 10),
    results: new Float32Array(values.length),
  };
  for (let i = 0; i < 2 + runs; i++) await core.step(io);
  await session.endProfiling();
  await core.release();
  const file = readdirSync(dir).find((f) => f.endsWith('.json'));
  if (!file) return { note: 'onnxruntime wrote no profile file' };
  type Ev = { cat: string; name: string; ts: number; dur: number; args?: { op_name?: string } };
  const events = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Ev[];
  rmSync(dir, { recursive: true, force: true });
  const runsEv = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').sort((a, b) => a.ts - b.ts);
  const from = runsEv[2]?.ts ?? 0;
  const nodes = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time') && e.ts >= from);
  const runMs = runsEv.slice(2).reduce((a, e) => a + e.dur, 0) / 1000 / runs;
  const byOp = new Map<string, { ms: number; n: number }>();
  const byPhase = new Map<string, number>();
  const byNode = new Map<string, { op: string; ms: number }>();
  let total = 0;
  for (const e of nodes) {
    const name = e.name.slice(0, -'_kernel_time'.length);
    const op = `${e.args?.op_name ?? '?'}${name.includes('nchwc') || e.args?.op_name?.startsWith('Reorder') ? ' (nchwc)' : ''}`;
    const phase = name.startsWith('grad/') ? 'backward' : name.startsWith('loss/') ? 'loss' : 'forward';
    const ms = e.dur / 1000 / runs;
    total += ms;
    const a = byOp.get(op) ?? { ms: 0, n: 0 };
    a.ms += ms;
    a.n += 1 / runs;
    byOp.set(op, a);
    byPhase.set(phase, (byPhase.get(phase) ?? 0) + ms);
    const b = byNode.get(name) ?? { op, ms: 0 };
    b.ms += ms;
    byNode.set(name, b);
  }
  const share = (ms: number) => `${((100 * ms) / total).toFixed(1)}%`;
  // The same micro-batch and threads in PyTorch, profiled by its own profiler: where the two steps differ.
  let pytorch: Record<string, unknown> | string = torchVersion ? 'not measured' : 'no torch';
  if (torchVersion && !flag('no-torch')) {
    const bn = model.graph.nodes.some((n) => n.opType === 'BatchNormalization');
    const t0 = await TorchRef.start(bn, t, micro);
    const p = await t0.ref.profile(runs);
    t0.ref.close();
    const tshare = (ms: number) => `${((100 * ms) / p.selfCpuMs).toFixed(1)}%`;
    pytorch = { stepMs: r1(p.stepMs), selfCpuMs: r1(p.selfCpuMs), byOp: p.byOp.map((e) => `${e.op}: ${r1(e.ms)} ms ${tshare(e.ms)} (${Math.round(e.calls)} calls)`) };
  }
  return {
    replicaBatch: micro,
    threads: t,
    runs,
    modelRunMs: r1(runMs),
    nodeMs: r1(total),
    byPhase: Object.fromEntries([...byPhase].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, `${r1(v)} ms ${share(v)}`])),
    byOp: [...byOp].sort((a, b) => b[1].ms - a[1].ms).slice(0, 15).map(([op, v]) => `${op}: ${r1(v.ms)} ms ${share(v.ms)} (${Math.round(v.n)} nodes)`),
    topNodes: [...byNode].sort((a, b) => b[1].ms - a[1].ms).slice(0, 12).map(([n, v]) => `${n} [${v.op}]: ${r2(v.ms)} ms ${share(v.ms)}`),
    pytorch,
  };
}

async function throughput(model: Model, bn: boolean) {
  const B = 128;
  const rounds = Number(opt('rounds', '5'));
  const per = Number(opt('steps', '4'));
  const R = opt('replicas') ? Number(opt('replicas')) : defaultReplicas(B, threads);
  let m = cloneModel(model);
  const x: Tensor = { dtype: 1, dims: [B, 1, 28, 28], data: Float32Array.from({ length: B * 784 }, () => Math.random() * 2 - 1) };
  if (bn) m = await insertBatchNorm(m, { input: x });
  const nchwc = !flag('no-nchwc');
  // The trainer's step (R replicas, NCHWc Convs); --variants adds one session in this thread (R = 1, 'one'),
  // the same without NCHWc ('plain') and other replica counts ('r<R>').
  const main = await stepRunner(m, B, R, nchwc);
  const variants: [string, Awaited<ReturnType<typeof stepRunner>>][] = [['trainerStep', main]];
  for (const v of (opt('variants', '') ?? '').split(',').filter(Boolean)) {
    if (v === 'one') variants.push(['oneSession', await stepRunner(m, B, 1, nchwc)]);
    else if (v === 'plain') variants.push(['oneSessionWithoutNchwc', await stepRunner(m, B, 1, false)]);
    else if (/^r\d+$/.test(v)) variants.push([`replicas${v.slice(1)}`, await stepRunner(m, B, Number(v.slice(1)), nchwc)]);
    else throw new Error(`unknown variant ${v} (one, plain, r<N>)`);
  }
  for (const [, v] of variants) {
    v.runner.x.set(x.data as Float32Array);
    for (let i = 0; i < B; i++) v.runner.targets[i * 10 + (i % 10)] = 1;
    for (let i = 0; i < 3; i++) await v.runner.step();
  }
  const torch = torchVersion && !flag('no-torch') ? await TorchRef.start(bn, threads, B) : undefined;
  // Interleaved rounds so all see the same machine load: wall time, and process CPU time (user+sys, all threads).
  const cpuMs = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  const wall = variants.map(() => [] as number[]);
  const cpu = variants.map(() => [] as number[]);
  const tWall: number[] = [];
  const tCpu: number[] = [];
  const load: string[] = [];
  const rssSeries: number[] = [];
  for (let i = 0; i < rounds; i++) {
    load.push(loadavg().map((l) => l.toFixed(2)).join(' '));
    for (let k = 0; k < variants.length; k++) {
      const t = performance.now();
      const c = cpuMs();
      for (let s = 0; s < per; s++) await variants[k]![1].runner.step();
      wall[k]!.push((performance.now() - t) / per);
      cpu[k]!.push((cpuMs() - c) / per);
    }
    if (torch) {
      const r = await torch.ref.steps(per);
      tWall.push(r.ms.reduce((a, b) => a + b, 0) / per);
      tCpu.push(r.cpuMs.reduce((a, b) => a + b, 0) / per);
    }
    rssSeries.push(rss());
  }
  torch?.ref.close();
  for (const [, v] of variants) await v.runner.release();
  const stat = (w: number[], c: number[]) => ({
    stepMs: r1(median(w)),
    stepMsRange: [r1(Math.min(...w)), r1(Math.max(...w))],
    imagesPerSec: Math.round((B / median(w)) * 1000),
    cpuMsPerStep: r1(median(c)),
  });
  const out: Record<string, unknown> = {
    batchNorm: bn,
    replicas: R,
    threadsPerReplica: Math.max(1, Math.floor(threads / R)),
    buildMs: Math.round(main.buildMs),
    trainingGraphNodes: main.nodes,
    nchwcConvs: main.lowered,
    rounds: `${rounds} x ${per} steps, interleaved`,
    loadAverage: load,
    ...stat(wall[0]!, cpu[0]!),
    rssMiB: rssSeries,
  };
  variants.slice(1).forEach(([name], k) => (out[name] = stat(wall[k + 1]!, cpu[k + 1]!)));
  if (torch) {
    // Per round: PyTorch's step time over shears' (>1: shears is faster), from the same round.
    const ratios = tWall.map((t, i) => t / wall[0]![i]!);
    out['pytorch'] = { ...torch.info, ...stat(tWall, tCpu), note: `bench/torch_ref.py, ${threads} threads, ${bn ? 'BatchNorm in train mode' : 'convs with bias, no BatchNorm (as folded)'}` };
    out['speedupVsPytorch'] = { median: r2(median(ratios)), range: [r2(Math.min(...ratios)), r2(Math.max(...ratios))], perRound: ratios.map(r2) };
  } else out['pytorch'] = flag('no-torch') ? 'not run (--no-torch)' : `not measured: ${PYTHON} has no torch (Debian: apt install python3-torch); shears alone`;
  if (!flag('no-profile')) out['profile'] = await profileStep(m, B, R, nchwc, Number(opt('profile-runs', '5')));
  return out;
}

async function main() {
  const model = await loadModel(modelPath);
  const out: Record<string, unknown> = { mode, threads, spin, cpus: cpus().length, model: modelPath };
  const ftBase = (): Partial<FinetuneOptions> => ({ threads, batch: 128, seed: Number(opt('seed', '0')), progress: !flag('quiet'), spin, nchwc: !flag('no-nchwc'), ...(opt('replicas') ? { replicas: Number(opt('replicas')) } : {}) });
  if (mode === 'throughput') {
    torchVersion = flag('no-torch') ? undefined : TorchRef.available();
    out['cpu'] = cpuInfo();
    out['nchwcBlock'] = (await nchwcBlock()) ?? 'none (onnxruntime has no NCHWc ops here)';
    out['torch'] = torchVersion ?? (flag('no-torch') ? 'not run (--no-torch)' : `${PYTHON} has no torch: PyTorch not measured, shears alone`);
    out['loadAverageAtStart'] = loadavg().map((l) => +l.toFixed(2));
    const only = opt('only');
    if (only !== 'bn') out['folded'] = await throughput(model, false);
    if (only !== 'folded') out['withBatchNorm'] = await throughput(model, true);
    out['loadAverageAtEnd'] = loadavg().map((l) => +l.toFixed(2));
  } else if (mode === 'export-step') {
    // The training graph one replica runs (batch / R samples, NCHWc-lowered unless --no-nchwc), for `ab`.
    const B = 128;
    const R = opt('replicas') ? Number(opt('replicas')) : defaultReplicas(B, threads);
    if (opt('wgrad-fold')) WGRAD_FOLD.maxPositions = Number(opt('wgrad-fold'));
    let m = cloneModel(model);
    if (flag('bn')) m = await insertBatchNorm(m, { input: { dtype: 1, dims: [B, 1, 28, 28], data: Float32Array.from({ length: B * 784 }, () => Math.random() * 2 - 1) } });
    const pre = await probeTypes(m, { input: [B / R, 1, 28, 28] });
    const state = decomposeBatchNormForTraining(m, pre.shapes);
    const tg = await buildTrainingGraph(m, { batch: B / R, loss: { ce: {} }, state });
    const low = flag('no-nchwc') ? { model: tg.model, lowered: 0 } : await lowerNchwc(tg.model);
    const { saveModel } = await import('../src/onnx/io.js');
    await saveModel(low.model, opt('out', 'step.onnx')!);
    out['saved'] = { file: opt('out', 'step.onnx'), replicaBatch: B / R, nodes: low.model.graph.nodes.length, nchwcConvs: low.lowered };
  } else if (mode === 'ab') {
    // Interleaved A/B of training graphs (files from export-step): every graph input fed with random values of
    // its declared shape, one session each with --threads threads, --rounds rounds of --steps runs.
    const files = args.slice(1).filter((a) => a.endsWith('.onnx'));
    const { createSession: open } = await import('../src/runtime/session.js');
    const sessions: { f: string; s: Awaited<ReturnType<typeof open>>; feeds: Record<string, Tensor>; ms: number[]; cpu: number[] }[] = [];
    for (const f of files) {
      const g = await loadModel(f);
      const feeds: Record<string, Tensor> = {};
      for (const i of g.graph.inputs) {
        const dims = (i.type?.shape ?? []).map((d) => (typeof d === 'number' ? d : 1));
        const n = dims.reduce((a, b) => a * b, 1);
        feeds[i.name] = { dtype: 1, dims, data: Float32Array.from({ length: n }, () => (Math.random() - 0.5) * 0.2) };
      }
      const s = await open(f, { threads, spin });
      for (let k = 0; k < 2; k++) await s.run(feeds);
      sessions.push({ f, s, feeds, ms: [], cpu: [] });
    }
    const rounds = Number(opt('rounds', '6'));
    const per = Number(opt('steps', '3'));
    const load: string[] = [];
    for (let r = 0; r < rounds; r++) {
      load.push(loadavg().map((l) => l.toFixed(2)).join(' '));
      // Alternate the order each round.
      const order = r % 2 ? [...sessions].reverse() : sessions;
      for (const v of order) {
        const t = performance.now();
        const c = process.cpuUsage();
        for (let k = 0; k < per; k++) await v.s.run(v.feeds);
        v.ms.push((performance.now() - t) / per);
        const u = process.cpuUsage(c);
        v.cpu.push((u.user + u.system) / 1000 / per);
      }
    }
    for (const v of sessions) await v.s.release();
    out['loadAverage'] = load;
    out['results'] = sessions.map((v, k) => {
      const ratios = v.ms.map((m, i) => m / sessions[0]!.ms[i]!);
      const cpuRatios = v.cpu.map((m, i) => m / sessions[0]!.cpu[i]!);
      const summary = (x: number[]) => ({ median: r2(median(x)), range: [r2(Math.min(...x)), r2(Math.max(...x))] });
      return { file: v.f, medianMs: r1(median(v.ms)), rangeMs: [r1(Math.min(...v.ms)), r1(Math.max(...v.ms))], cpuMs: r1(median(v.cpu)), ...(k > 0 ? { timeVsFirst: summary(ratios), cpuVsFirst: summary(cpuRatios) } : {}) };
    });
  } else if (mode === 'scratch') {
    const { train, test } = await data();
    const r = await finetune(model, {
      ...ftBase(), train, val: test, epochs: Number(opt('epochs', '1')), reinit: true, batchNorm: 'fresh',
      lr: Number(opt('lr', '0.2')), schedule: { kind: 'onecycle' },
      optimizer: { kind: 'sgd', momentum: 0.9, nesterov: true, weightDecay: 5e-4 },
    });
    out['result'] = { top1: r.history.at(-1)?.valAcc, seconds: +r.seconds.toFixed(1), history: r.history };
    out['exportedTop1'] = await evaluateAccuracy(r.model, test, { threads });
    out['pytorch'] = { top1: 0.8937, seconds: 85 };
  } else if (mode === 'unstructured90') {
    const { pruneUnstructured } = await import('../src/sparsity/unstructured.js');
    const { train, test } = await data();
    const pruned = cloneModel(model);
    const scope = opt('scope', 'global') as 'global' | 'lamp' | 'layer';
    out['scope'] = scope;
    pruneUnstructured(pruned, { sparsity: 0.9, scope, method: 'l1' });
    const { applyMasks } = await import('../src/sparsity/masks.js');
    applyMasks(pruned);
    const oneShot = await evaluateAccuracy(pruned, test, { threads });
    const r = await finetune(pruned, {
      ...ftBase(), train, val: test, epochs: Number(opt('epochs', '1')), lr: Number(opt('lr', '0.01')),
      batchNorm: (opt('bn', 'reinsert') as 'none' | 'reinsert'), bnReference: model, ...(flag('kd') ? { teacher: model } : {}),
    });
    const { getMasks } = await import('../src/sparsity/masks.js');
    let violations = 0;
    for (const [k, mask] of getMasks(r.model)) {
      const d = r.model.graph.initializers.get(k)!.data as Float32Array;
      for (let i = 0; i < mask.length; i++) if (!mask[i] && d[i] !== 0) violations++;
    }
    out['result'] = { oneShotTop1: oneShot, afterBnReinsertTop1: r.initialValAcc, top1: await evaluateAccuracy(r.model, test, { threads }), seconds: +r.seconds.toFixed(1), maskViolations: violations, history: r.history };
    out['pytorch'] = { oneShotTop1: 0.1109, top1: 0.9248 };
  } else if (mode === 'structured50') {
    const { pruneStructured } = await import('../src/prune/structured/index.js');
    const { train, test } = await data();
    const t0 = performance.now();
    const pr = pruneStructured(model, {
      targetMacs: Number(opt('macs', '0.5')), importance: 'l2' as never, inputShapes: { input: [1, 1, 28, 28] },
      roundTo: Number(opt('round-to', '1')),
    });
    const pruneSec = (performance.now() - t0) / 1000;
    const oneShot = await evaluateAccuracy(pr.model, test, { threads });
    const r = await finetune(pr.model, {
      ...ftBase(), train, val: test, epochs: Number(opt('epochs', '2')), lr: Number(opt('lr', '0.01')),
      batchNorm: (opt('bn', 'reinsert') as 'none' | 'reinsert'), bnReference: model,
      ...(flag('kd') || opt('objective') === 'match-teacher' ? { teacher: model } : {}),
      ...(opt('objective') === 'match-teacher' ? { objective: 'match-teacher' as const } : {}),
    });
    out['result'] = { macsRatio: pr.report.macsRatio, pruneSeconds: +pruneSec.toFixed(1), oneShotTop1: oneShot, afterBnReinsertTop1: r.initialValAcc, top1: await evaluateAccuracy(r.model, test, { threads }), finetuneSeconds: +r.seconds.toFixed(1), history: r.history };
    out['pytorch'] = { torchPruning: { macsRatio: 0.476, oneShotTop1: 0.2842, top1: 0.9317, seconds: 127 } };
  } else throw new Error(`unknown mode ${mode}`);
  process.stdout.write(`${JSON.stringify(out, null, 1)}\n`);
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});
