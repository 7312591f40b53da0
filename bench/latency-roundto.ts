/**
 * Which channel counts do onnxruntime's CPU kernels like? Prunes fmnist_resnet20 and resnet18 to 50% MACs with
 * several --round-to values (uniform and global ranking) and measures latency against the dense model
 * (alternating dense/pruned runs over several rounds; median of round medians). Prints JSON.
 * Usage: node dist/bench/latency-roundto.js [--rounds R] [--round-to 1,8,16] [--threads T] [--cases fmnist,r18b1,r18b32]
 */
import { join } from 'node:path';
import { loadModel } from '../src/onnx/io.js';
import { pruneStructured } from '../src/prune/structured/index.js';
import { measureLatency } from '../src/metrics/latency.js';
import type { Model } from '../src/ir/graph.js';

const SHARED = new URL('../../../shared/models/', import.meta.url).pathname;
const args = process.argv.slice(2);
const opt = (k: string) => {
  const i = args.indexOf(k);
  return i >= 0 ? args[i + 1] : undefined;
};
const rounds = Number(opt('--rounds') ?? 3);
const rts = (opt('--round-to') ?? '1,8,16').split(',').map(Number);
const threads = opt('--threads') ? Number(opt('--threads')) : undefined;
const target = Number(opt('--target-macs') ?? 0.5);
const wanted = (opt('--cases') ?? 'fmnist,r18b1,r18b32').split(',');
const log = (m: string) => process.stderr.write(`${m}\n`);

const CASES = [
  { id: 'fmnist', model: 'fmnist_resnet20.onnx', batch: 128, runs: 10 },
  { id: 'r18b1', model: 'resnet18.onnx', batch: 1, runs: 20 },
  { id: 'r18b32', model: 'resnet18.onnx', batch: 32, runs: 5 },
].filter((c) => wanted.includes(c.id));

const med = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;

async function main(): Promise<void> {
  const out: unknown[] = [];
  for (const c of CASES) {
    const dense = loadModel(join(SHARED, c.model));
    const variants: { name: string; model: Model; macs: number; widths: string }[] = [];
    for (const rt of rts) {
      for (const global of [false, true]) {
        const r = pruneStructured(dense, { targetMacs: target, roundTo: rt, global });
        const widths = [...new Set(r.report.layers.map((l) => l.after))].sort((a, b) => a - b).join('/');
        variants.push({ name: `round-to ${rt}${global ? ' global' : ''}`, model: r.model, macs: r.report.macsRatio, widths });
      }
    }
    const times = new Map<string, number[]>([['dense', []], ...variants.map((v) => [v.name, []] as [string, number[]])]);
    const mins = new Map<string, number[]>([['dense', []], ...variants.map((v) => [v.name, []] as [string, number[]])]);
    const cpus = new Map<string, number[]>([['dense', []], ...variants.map((v) => [v.name, []] as [string, number[]])]);
    const bench = { batch: c.batch, warmup: 2, runs: c.runs, ...(threads ? { threads } : {}) };
    for (let r = 0; r < rounds; r++) {
      log(`${c.id} round ${r + 1}/${rounds}`);
      const rd = await measureLatency(dense, bench);
      times.get('dense')!.push(rd.median);
      mins.get('dense')!.push(rd.min);
      cpus.get('dense')!.push(rd.cpuMedian);
      for (const v of variants) {
        const rv = await measureLatency(v.model, bench);
        times.get(v.name)!.push(rv.median);
        mins.get(v.name)!.push(rv.min);
        cpus.get(v.name)!.push(rv.cpuMedian);
      }
    }
    const d = med(times.get('dense')!);
    const dmin = Math.min(...mins.get('dense')!);
    const dcpu = med(cpus.get('dense')!);
    out.push({
      model: c.model, batch: c.batch, denseMs: +d.toFixed(3), denseMinMs: +dmin.toFixed(3), denseCpuMs: +dcpu.toFixed(3),
      variants: variants.map((v) => ({ name: v.name, macsRatio: +v.macs.toFixed(4), widths: v.widths, ms: +med(times.get(v.name)!).toFixed(3), speedup: +(d / med(times.get(v.name)!)).toFixed(3), minMs: +Math.min(...mins.get(v.name)!).toFixed(3), speedupOfMins: +(dmin / Math.min(...mins.get(v.name)!)).toFixed(3), cpuMs: +med(cpus.get(v.name)!).toFixed(3), cpuSpeedup: +(dcpu / med(cpus.get(v.name)!)).toFixed(3) })),
    });
  }
  process.stdout.write(`${JSON.stringify({ targetMacs: target, rounds, threads: threads ?? null, cases: out }, null, 1)}\n`);
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exitCode = 1;
});
