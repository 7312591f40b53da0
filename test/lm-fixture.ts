/** A tiny language model for the token-data tests: Gather embedding [V, D] -> MatMul [D, V] -> logits [N, T, V]. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DataType } from '../src/ir/dtype.js';
import { GraphBuilder } from '../src/ir/builder.js';
import type { Dim, Model } from '../src/ir/graph.js';
import { floatTensor } from '../src/ir/tensor.js';

export const V = 7;
export const D = 3;

/** Deterministic weights: E [V, D], W [D, V]. */
export function lmWeights(seed = 1): { E: Float32Array; W: Float32Array } {
  let s = seed;
  const r = () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  };
  return { E: Float32Array.from({ length: V * D }, () => 2 * r()), W: Float32Array.from({ length: D * V }, () => 2 * r()) };
}

/**
 * The model; `seqDim` is the input's sequence dimension (symbolic 'T' by default, or a number), `bias` adds a
 * per-position term through an Add so the model has more than one op on the path.
 */
export function tinyLm(opts: { seqDim?: Dim; seed?: number; inputType?: number } = {}): Model {
  const { E, W } = lmWeights(opts.seed);
  const b = new GraphBuilder('tiny_lm');
  const ids = b.input('input_ids', ['N', opts.seqDim ?? 'T'], opts.inputType ?? DataType.INT64);
  b.init('embed', floatTensor([V, D], E));
  b.init('head', floatTensor([D, V], W));
  const h = b.node('Gather', ['embed', ids], { axis: 0 });
  b.node('MatMul', [h, 'head'], {}, { output: 'logits' });
  b.output('logits', ['N', opts.seqDim ?? 'T', V]);
  return b.model(17);
}

/** Mean next-token NLL (nats) of the fixture on windows at `starts` of `ids`, computed independently in float64. */
export function referenceNll(ids: ArrayLike<number>, starts: number[], t: number, seed = 1): { nll: number; n: number; top1: number } {
  const { E, W } = lmWeights(seed);
  let sum = 0;
  let n = 0;
  let correct = 0;
  for (const s of starts) {
    for (let j = 0; j < t; j++) {
      const x = ids[s + j]!;
      const y = ids[s + j + 1]!;
      const logits = Array.from({ length: V }, (_, v) => {
        let a = 0;
        for (let d = 0; d < D; d++) a += Math.fround(E[x * D + d]!) * Math.fround(W[d * V + v]!);
        return a;
      });
      const m = Math.max(...logits);
      const lse = m + Math.log(logits.reduce((acc, l) => acc + Math.exp(l - m), 0));
      sum += lse - logits[y]!;
      if (logits.indexOf(m) === y) correct++;
      n++;
    }
  }
  return { nll: sum / n, n, top1: correct / n };
}

/** A byte-token file of `n` ids below V (a fixed pseudo-random stream). */
export function writeTokens(dir: string, n: number, name = 'tokens.bin', seed = 3): { path: string; ids: Uint8Array } {
  let s = seed;
  const ids = Uint8Array.from({ length: n }, () => {
    s = (s * 48271) % 2147483647;
    return s % V;
  });
  const path = join(dir, name);
  writeFileSync(path, ids);
  return { path, ids };
}
