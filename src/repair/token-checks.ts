/**
 * Checks of token calibration data against a language model, before any work: every token id inside the
 * model's vocabulary (the rows of its embedding table: a Gather of an initializer by the token input, else the
 * last dimension of the logits), and the window length accepted by the model where shape inference can tell
 * (positional tables of a fixed length: a rotary cos/sin cache, a causal mask).
 */
import type { Dataset } from '../data/dataset.js';
import { checkVocabulary, isTokenData, vocabularyOf } from '../data/tokens.js';
import { inferShapes } from '../analysis/shapes.js';
import { ShearsError } from '../errors.js';
import type { Model } from '../ir/graph.js';

/** Rows of the embedding table the token input indexes (a Gather of an initializer by a model input), if any. */
export function embeddingRows(model: Model): number | undefined {
  const g = model.graph;
  const inputs = new Set(g.inputs.filter((i) => !g.initializers.has(i.name)).map((i) => i.name));
  for (const n of g.nodes) {
    if (n.opType !== 'Gather' || (n.domain !== '' && n.domain !== 'ai.onnx')) continue;
    const table = g.initializers.get(n.inputs[0] ?? '');
    const axis = n.attrs.get('axis');
    if (!table || !inputs.has(n.inputs[1] ?? '') || (axis?.kind === 'int' && Number(axis.value) !== 0)) continue;
    if (table.dims.length === 2) return table.dims[0];
  }
  return undefined;
}

/** Throws a ShearsError when token data does not fit the model (ids outside the vocabulary, windows too long). */
export function checkTokenData(model: Model, data: Dataset, what = 'the model'): void {
  if (!isTokenData(data)) return;
  const vocab = embeddingRows(model) ?? vocabularyOf(model);
  if (vocab !== undefined) checkVocabulary(data, vocab, what);
  const t = data.context;
  const input = model.graph.inputs.find((i) => !model.graph.initializers.has(i.name));
  if (t === undefined || !input || model.graph.inputs.filter((i) => !model.graph.initializers.has(i.name)).length !== 1) return;
  const fails = (len: number): string | undefined => {
    try {
      inferShapes(model, { inputShapes: { [input.name]: [1, len] } });
      return undefined;
    } catch (e) {
      if (e instanceof ShearsError) return e.message;
      throw e;
    }
  };
  const problem = fails(t);
  // only a length problem when a short window passes (else shape inference cannot tell)
  if (problem !== undefined && t > 1 && fails(1) === undefined) {
    throw new ShearsError(`${what} does not accept windows of ${t} tokens (longer than the context it was built for?): ${problem}`);
  }
}
