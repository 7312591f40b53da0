/**
 * Language-model evaluation on token data (data/tokens.ts): mean negative log-likelihood of the next token over
 * every position of the windows, perplexity, bits per token (bits per byte for byte-level data) and next-token
 * top-1 accuracy. The log-softmax, the target's log-probability and the argmax run in onnxruntime, appended to
 * the model's graph (only [N, T] values come back, not the [N, T, V] logits).
 */
import { ShearsError } from '../errors.js';
import type { Dataset } from '../data/dataset.js';
import { bindTokens, checkVocabulary, isTokenData, TokenDataset } from '../data/tokens.js';
import { DataType } from '../ir/dtype.js';
import { cloneModel } from '../ir/clone.js';
import type { Model, Node } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import type { Dim } from '../ir/graph.js';
import { createSession, type Runner } from '../runtime/session.js';

export interface PerplexityReport {
  /** The output scored (logits [N, T, V]). */
  output: string;
  /** Next-token predictions scored (windows x T). */
  predictions: number;
  /** Mean negative log-likelihood, nats per token. */
  nll: number;
  /** exp(nll). */
  perplexity: number;
  /** nll / ln 2. */
  bitsPerToken: number;
  /** 'byte' for raw-byte token files (.bin): bitsPerToken is then bits per byte. */
  unit: 'byte' | 'token';
  /** Fraction of positions whose highest logit is the next token. */
  top1: number;
  /** Vocabulary size (the logits' last dimension). */
  vocabulary: number;
}

export interface PerplexityOptions {
  /** A second model (the original) scored on the same windows; its top-1 agreement with the model is reported. */
  reference?: Model;
  /** Windows: evenly spaced over the stream when the data is a whole stream (default 64). */
  limit?: number;
  /** Windows per run (default 16). */
  batchSize?: number;
  threads?: number;
  /** The logits output (default the first output). */
  output?: string;
  onProgress?: (p: LMEvalProgress) => void;
}

const LOGPROB = 'shears_lm/target_logprob';
const ARGMAX = 'shears_lm/argmax';
const TARGETS = 'shears_lm/targets';

/**
 * The model with its logits turned into two outputs: the log-probability of the target token [N, T, 1] (fed as
 * `shears_lm/targets`, int64 [N, T, 1]) and the argmax token [N, T]; the model's own outputs are dropped.
 */
export function nllGraph(model: Model, output?: string): { model: Model; output: string } {
  const m = cloneModel(model);
  const g = m.graph;
  const out = output ?? g.outputs[0]?.name;
  if (out === undefined) throw new ShearsError('the model has no output');
  const produced = g.nodes.some((n) => n.outputs.includes(out)) || g.inputs.some((i) => i.name === out) || g.initializers.has(out);
  if (!produced) throw new ShearsError(`the model has no output '${out}' (outputs: ${g.outputs.map((o) => o.name).join(', ')})`);
  const node = (name: string, opType: string, inputs: string[], outputs: string[], attrs: [string, number][] = []): Node => ({
    name, opType, domain: '', inputs, outputs, attrs: new Map(attrs.map(([k, v]) => [k, { kind: 'int', value: v }])),
  });
  const declared = g.outputs.find((o) => o.name === out)?.type?.elemType;
  let logits = out;
  if (declared !== undefined && declared !== DataType.FLOAT) {
    logits = 'shears_lm/logits_f32';
    g.nodes.push(node('shears_lm/cast', 'Cast', [out], [logits], [['to', DataType.FLOAT]]));
  }
  g.nodes.push(
    node('shears_lm/log_softmax', 'LogSoftmax', [logits], ['shears_lm/logp'], [['axis', -1]]),
    node('shears_lm/gather', 'GatherElements', ['shears_lm/logp', TARGETS], [LOGPROB], [['axis', -1]]),
    node('shears_lm/argmax', 'ArgMax', [logits], [ARGMAX], [['axis', -1], ['keepdims', 0]]),
  );
  g.inputs.push({ name: TARGETS, type: { elemType: DataType.INT64, shape: ['N', 'T', 1] } });
  g.outputs = [{ name: LOGPROB, type: { elemType: DataType.FLOAT, shape: ['N', 'T', 1] } }, { name: ARGMAX, type: { elemType: DataType.INT64, shape: ['N', 'T'] } }];
  return { model: m, output: out };
}

/** The vocabulary of a language model: its logits' declared last dimension (undefined when symbolic). */
function vocabulary(model: Model, output: string): number | undefined {
  const declared = model.graph.outputs.find((o) => o.name === output)?.type?.shape;
  const d = declared?.[declared.length - 1];
  return typeof d === 'number' && d > 0 ? d : undefined;
}

class Meter {
  nll = 0;
  n = 0;
  correct = 0;
  add(logp: Float32Array, pred: BigInt64Array, targets: Int32Array): void {
    for (let i = 0; i < targets.length; i++) {
      this.nll -= logp[i]!;
      if (Number(pred[i]) === targets[i]) this.correct++;
    }
    this.n += targets.length;
  }
  report(output: string, unit: 'byte' | 'token', vocabulary: number): PerplexityReport {
    const nll = this.nll / this.n;
    return { output, predictions: this.n, nll, perplexity: Math.exp(nll), bitsPerToken: nll / Math.LN2, unit, top1: this.correct / this.n, vocabulary };
  }
}

/** Progress of an evaluation (as metrics/evaluate.ts's EvalProgress). */
export interface LMEvalProgress {
  done: number;
  total: number;
  seconds: number;
}

/** The evaluation report of a language model on token data: an EvalReport (metrics/evaluate.ts) with `perplexity`. */
export interface LMEvalReport {
  dataset: string;
  /** Windows scored. */
  samples: number;
  batchSize: number;
  input: { name: string; shape: Dim[] };
  preprocess: Record<string, never>;
  seconds: number;
  samplesPerSecond: number;
  perplexity: PerplexityReport;
  /** With a reference model: its perplexity on the same windows, and the fraction of positions where both predict the same next token. */
  referencePerplexity?: PerplexityReport;
  agreement?: number;
}

/**
 * Perplexity of a language model on token data: `limit` windows (default 64) evenly spaced over the stream (or
 * the windows of a subset as they are), every position predicting the next token. With a reference model, the
 * same for it (`referencePerplexity`) and the fraction of positions where both predict the same next token.
 */
export async function evaluatePerplexity(model: Model, data: Dataset, opts: PerplexityOptions = {}): Promise<LMEvalReport> {
  if (!isTokenData(data)) throw new ShearsError(`perplexity needs token data (tokens:FILE.bin or tokens:FILE.npy), not ${data.description}`);
  let ds: TokenDataset = bindTokens(data, model);
  if (opts.reference) ds = bindTokens(ds, opts.reference, 'the reference');
  const t = ds.context!;
  const windows = ds.whole ? ds.evenly(Math.min(opts.limit ?? 64, ds.size)) : opts.limit !== undefined && opts.limit < ds.size ? ds.subset(Array.from({ length: opts.limit }, (_, i) => i)) : ds;
  const input = model.graph.inputs.find((i) => !model.graph.initializers.has(i.name))!;
  const models = [model, ...(opts.reference ? [opts.reference] : [])];
  const graphs = models.map((m) => nllGraph(m, opts.output));
  const vocab = models.map((m, k) => vocabulary(m, graphs[k]!.output));
  for (const [k, v] of vocab.entries()) if (v !== undefined) checkVocabulary(ds, v, k === 0 ? 'the model' : 'the reference');
  const unit: 'byte' | 'token' = ds.stream.ids instanceof Uint8Array ? 'byte' : 'token';
  const batch = opts.batchSize ?? 16;
  const fixed = input.type?.shape?.[0];
  const bs = typeof fixed === 'number' && fixed > 0 ? fixed : batch;
  const cfg = opts.threads ? { threads: opts.threads } : {};
  const runners: Runner[] = [];
  const meters = models.map(() => new Meter());
  let agree = 0;
  let done = 0;
  const total = windows.size;
  const t0 = performance.now();
  try {
    for (const gr of graphs) runners.push(await createSession(gr.model, cfg));
    const inputNames = models.map((m) => m.graph.inputs.find((i) => !m.graph.initializers.has(i.name))!.name);
    for await (const b of windows.batches(bs)) {
      const n = b.x.dims[0]!;
      if (n !== bs && typeof fixed === 'number' && fixed > 0) break; // a fixed-batch model sees whole batches only
      const targets = b.targets!;
      const tgt: Tensor = { dtype: DataType.INT64, dims: [n, t, 1], data: BigInt64Array.from(targets, (v) => BigInt(v)) };
      const outs = await Promise.all(runners.map((r, k) => run(r, { [inputNames[k]!]: b.x, [TARGETS]: tgt }, vocab[k], k === 0 ? 'the model' : 'the reference')));
      outs.forEach((o, k) => meters[k]!.add(o.logp, o.pred, targets));
      if (outs.length > 1) for (let i = 0; i < targets.length; i++) if (outs[0]!.pred[i] === outs[1]!.pred[i]) agree++;
      done += n;
      opts.onProgress?.({ done, total, seconds: (performance.now() - t0) / 1000 });
    }
  } finally {
    for (const r of runners) await r.release();
  }
  if (meters[0]!.n === 0) throw new ShearsError(`no windows were scored (${windows.description})`);
  const seconds = (performance.now() - t0) / 1000;
  const v = (k: number) => vocab[k] ?? 0;
  const report: LMEvalReport = {
    dataset: windows.description,
    samples: done,
    batchSize: bs,
    input: { name: input.name, shape: input.type?.shape ?? [] },
    preprocess: {},
    seconds,
    samplesPerSecond: seconds > 0 ? done / seconds : 0,
    perplexity: meters[0]!.report(graphs[0]!.output, unit, v(0)),
  };
  if (opts.reference) {
    report.referencePerplexity = meters[1]!.report(graphs[1]!.output, unit, v(1));
    report.agreement = agree / meters[0]!.n;
  }
  return report;
}

async function run(r: Runner, feeds: Record<string, Tensor>, vocab: number | undefined, what: string): Promise<{ logp: Float32Array; pred: BigInt64Array }> {
  let o: Record<string, Tensor>;
  try {
    o = await r.run(feeds, [LOGPROB, ARGMAX]);
  } catch (e) {
    const msg = (e as Error).message;
    if (vocab === undefined && /GatherElements|out of bounds|index/i.test(msg)) throw new ShearsError(`${what}: a token id is outside the vocabulary (its logits' last dimension): ${msg}`);
    const t = feeds[TARGETS]!.dims[1];
    throw new ShearsError(`${what} failed on windows of ${t} tokens (longer than the context it was built for? positional tables fix it): ${msg}`);
  }
  return { logp: o[LOGPROB]!.data as Float32Array, pred: o[ARGMAX]!.data as BigInt64Array };
}

/** Formats a perplexity report: 'bits per byte 2.2034  perplexity 4.606  NLL 1.5273 nats  ...'. */
export function formatPerplexity(p: PerplexityReport): string {
  return `bits per ${p.unit} ${p.bitsPerToken.toFixed(4)}  perplexity ${p.perplexity.toFixed(3)}  NLL ${p.nll.toFixed(4)} nats  next-${p.unit} top-1 ${(100 * p.top1).toFixed(2)}%  (${p.predictions.toLocaleString('en-US')} predictions)`;
}
