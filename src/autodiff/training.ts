/**
 * Training graphs: forward model + loss + gradients of the trainable weights, in standard ONNX ops, to run in a
 * plain onnxruntime InferenceSession. Trainable weights become graph inputs (each step feeds the current
 * values); outputs are the loss, the model output and one gradient per trainable weight.
 */
import { ShearsError } from '../errors.js';
import { DataType, isFloatType } from '../ir/dtype.js';
import { removeDeadNodes } from '../ir/edit.js';
import type { Model } from '../ir/graph.js';
import { numel, type Tensor } from '../ir/tensor.js';
import { appendEmitted, buildBackward } from './backward.js';
import { appendLoss, LOSS, type LossSpec } from './losses.js';
import { probeTypes } from './shapes.js';
import { cloneModel } from '../ir/clone.js';

export interface TrainingGraphOptions {
  /** Fixed batch size of the training graph. */
  batch: number;
  loss: LossSpec;
  /** Initializers to train; default every float initializer with more than one element that gets a gradient. */
  trainable?: string[];
  /** Initializers never trained (with the default `trainable`): inputs pinned to a fed value, say. */
  frozen?: readonly string[];
  /** The model output the loss reads (default the first graph output). */
  output?: string;
  /**
   * Model inputs whose first dimension is the batch and which are fed per step; default all graph inputs
   * that are not initializers. Their shapes come from the graph with the batch dimension set.
   */
  inputShapes?: Record<string, number[]>;
  /**
   * Non-trainable state updated by the step (BatchNorm running statistics): the initializer `input` becomes a
   * graph input, the value `output` a graph output holding its new value.
   */
  state?: { input: string; output: string }[];
}

export interface TrainingGraph {
  model: Model;
  /** Trainable weights in graph-input order, with their initial values. */
  params: { name: string; dims: number[]; init: Tensor }[];
  /** Weight name -> name of its gradient output. */
  gradOutputs: Map<string, string>;
  loss: string;
  output: string;
  /** State inputs (initial values) and the outputs with their updated values. */
  state: { input: string; output: string; init: Tensor }[];
  /** Data inputs (images, target, teacher probabilities) with static shapes. */
  dataInputs: { name: string; dims: number[]; elemType: number }[];
}




/** The float type (FLOAT or DOUBLE) holding most float weight elements, if any. */
function weightType(inits: ReadonlyMap<string, Tensor>): number | undefined {
  let floats = 0;
  let doubles = 0;
  for (const t of inits.values()) {
    const n = numel(t.dims);
    if (n <= 1) continue;
    if (t.dtype === DataType.FLOAT) floats += n;
    else if (t.dtype === DataType.DOUBLE) doubles += n;
  }
  if (floats === 0 && doubles === 0) return undefined;
  return doubles > floats ? DataType.DOUBLE : DataType.FLOAT;
}

export async function buildTrainingGraph(model: Model, opts: TrainingGraphOptions): Promise<TrainingGraph> {
  const m = cloneModel(model);
  const g = m.graph;
  const initNames = new Set(g.initializers.keys());
  g.inputs = g.inputs.filter((i) => !initNames.has(i.name));
  const output = opts.output ?? g.outputs[0]?.name;
  if (!output) throw new ShearsError('the model has no output');
  const dataShapes: Record<string, number[]> = {};
  for (const inp of g.inputs) {
    const shape = opts.inputShapes?.[inp.name] ?? (inp.type?.shape ?? []).map((d, i) => {
      if (i === 0) return opts.batch;
      if (typeof d !== 'number') throw new ShearsError(`input '${inp.name}' has a symbolic dimension ${i} ('${d}'): the training graph needs its static shape (TrainingGraphOptions.inputShapes)`);
      return d;
    });
    dataShapes[inp.name] = shape;
    inp.type = { elemType: inp.type?.elemType ?? DataType.FLOAT, shape };
  }
  // Output shape and dtype, at the chosen batch.
  const fwdTypes = await probeTypes(m, dataShapes);
  const outShape = fwdTypes.shapes.get(output);
  const outType = fwdTypes.elemTypes.get(output) ?? DataType.FLOAT;
  if (!outShape) throw new ShearsError(`cannot find the shape of output '${output}'`);
  if (outType !== DataType.FLOAT && outType !== DataType.DOUBLE) throw new ShearsError('training needs a float32 or float64 model');
  // Weights and gradients keep the type most of the float weights have; an output of the other float type (a
  // detector head decoding boxes in float64) is cast to it for the loss.
  const elemType = weightType(g.initializers) ?? outType;

  const taken = new Set<string>([...g.initializers.keys(), ...g.inputs.map((i) => i.name)]);
  for (const n of g.nodes) for (const o of n.outputs) taken.add(o);
  let lossOn = output;
  if (elemType !== outType) {
    lossOn = `${output}/as_${elemType === DataType.DOUBLE ? 'float64' : 'float32'}`;
    for (let k = 1; taken.has(lossOn); k++) lossOn = `${output}/as_weights_${k}`;
    taken.add(lossOn);
    g.nodes.push({ name: lossOn, opType: 'Cast', domain: '', inputs: [output], outputs: [lossOn], attrs: new Map([['to', { kind: 'int', value: elemType }]]) });
  }
  const lossG = appendLoss(g, lossOn, outShape, elemType, opts.loss, taken);
  for (const li of lossG.inputs) {
    if (!g.inputs.some((i) => i.name === li.name)) g.inputs.push(li);
    dataShapes[li.name] = (li.type?.shape as number[] | undefined) ?? outShape;
  }

  // Candidate weights: float initializers (more than one element unless named explicitly).
  const candidates = opts.trainable ?? [...g.initializers.entries()].filter(([k, t]) => isFloatType(t.dtype) && t.dtype === elemType && numel(t.dims) > 1 && !k.startsWith('loss/') && !opts.frozen?.includes(k)).map(([k]) => k);
  for (const c of candidates) if (!g.initializers.has(c)) throw new ShearsError(`trainable weight '${c}' is not an initializer`);
  const types = await probeTypes(m, dataShapes);
  const back = buildBackward(m, { loss: LOSS, wrt: candidates, types, elemType, ...(lossG.detached ? { detached: new Set(lossG.detached) } : {}) });
  appendEmitted(g, back.emitter);

  const params: TrainingGraph['params'] = [];
  const gradOutputs = new Map<string, string>();
  for (const c of candidates) {
    const gname = back.grads.get(c);
    if (!gname) continue;
    const init = g.initializers.get(c)!;
    g.initializers.delete(c);
    g.inputs.push({ name: c, type: { elemType: init.dtype, shape: init.dims } });
    params.push({ name: c, dims: init.dims, init });
    // Give gradients stable output names.
    const out = `grad:${c}`;
    g.nodes.push({ name: `grad_out:${c}`, opType: 'Identity', domain: '', inputs: [gname], outputs: [out], attrs: new Map() });
    gradOutputs.set(c, out);
  }
  if (params.length === 0) throw new ShearsError('no trainable weight has a gradient');
  const state: TrainingGraph['state'] = [];
  for (const st of opts.state ?? []) {
    const init = g.initializers.get(st.input);
    if (!init) throw new ShearsError(`state '${st.input}' is not an initializer`);
    g.initializers.delete(st.input);
    g.inputs.push({ name: st.input, type: { elemType: init.dtype, shape: init.dims } });
    state.push({ ...st, init });
  }
  g.outputs = [{ name: LOSS }, { name: output }, ...[...gradOutputs.values()].map((name) => ({ name })), ...state.map((st) => ({ name: st.output }))];
  removeDeadNodes(g);
  const used = new Set<string>();
  for (const n of g.nodes) for (const i of n.inputs) used.add(i);
  for (const k of [...g.initializers.keys()]) if (!used.has(k)) g.initializers.delete(k);
  const dataInputs = g.inputs.filter((i) => dataShapes[i.name]).map((i) => ({ name: i.name, dims: dataShapes[i.name]!, elemType: i.type?.elemType ?? DataType.FLOAT }));
  return { model: m, params, gradOutputs, loss: LOSS, output, dataInputs, state };
}

/**
 * Adds one run's weight gradients (the outputs `gradOutputs` names, by weight) into `sums`: gradients summed over
 * batches, as Taylor importance weighs weights with them.
 */
export function addGradients(sums: Map<string, Float32Array>, res: Record<string, Tensor>, gradOutputs: ReadonlyMap<string, string>): void {
  for (const [w, gname] of gradOutputs) {
    const g = res[gname]!.data as Float32Array;
    const acc = sums.get(w);
    if (!acc) sums.set(w, Float32Array.from(g));
    else for (let i = 0; i < g.length; i++) acc[i]! += g[i]!;
  }
}
