/** A small builder for ONNX graphs: test fixtures, and graphs shears generates (calibration, training). */
import { DataType } from './dtype.js';
import type { Attr, Dim, Graph, Model, Node } from './graph.js';
import { emptyGraph } from './graph.js';
import type { Tensor } from './tensor.js';

/** Forces a float attribute even when the number is integral. */
export function F(value: number): Attr {
  return { kind: 'float', value };
}
export function Fs(value: number[]): Attr {
  return { kind: 'floats', value };
}

export type AttrInit = number | number[] | string | string[] | Tensor | Graph | Attr;

export function toAttr(v: AttrInit): Attr {
  if (typeof v === 'number') return Number.isInteger(v) ? { kind: 'int', value: v } : { kind: 'float', value: v };
  if (typeof v === 'string') return { kind: 'string', value: v };
  if (Array.isArray(v)) {
    if (v.length > 0 && typeof v[0] === 'string') return { kind: 'strings', value: v as string[] };
    const nums = v as number[];
    return nums.every((x) => Number.isInteger(x)) ? { kind: 'ints', value: nums } : { kind: 'floats', value: nums };
  }
  if ('kind' in v) return v;
  if ('nodes' in v) return { kind: 'graph', value: v };
  return { kind: 'tensor', value: v };
}

export class GraphBuilder {
  readonly graph: Graph;
  private counter = 0;
  constructor(name = 'graph') {
    this.graph = emptyGraph(name);
  }

  fresh(base: string): string {
    return `${base}_${this.counter++}`;
  }

  input(name: string, shape: Dim[], elemType: number = DataType.FLOAT): string {
    this.graph.inputs.push({ name, type: { elemType, shape } });
    return name;
  }

  init(name: string, t: Tensor): string {
    this.graph.initializers.set(name, t);
    return name;
  }

  /** Adds a node; returns its output names (`outputs` names them or gives their count, default 1). */
  nodeN(opType: string, inputs: string[], attrs: Record<string, AttrInit> = {}, outputs: number | string[] = 1, opts: { name?: string; domain?: string } = {}): string[] {
    const name = opts.name ?? this.fresh(opType);
    const outs = typeof outputs === 'number' ? Array.from({ length: outputs }, (_, i) => `${name}_out${i}`) : outputs;
    const node: Node = {
      name,
      opType,
      domain: opts.domain ?? '',
      inputs,
      outputs: outs,
      attrs: new Map(Object.entries(attrs).map(([k, v]) => [k, toAttr(v)])),
    };
    this.graph.nodes.push(node);
    return outs;
  }

  /** Adds a single-output node and returns its output name. */
  node(opType: string, inputs: string[], attrs: Record<string, AttrInit> = {}, opts: { name?: string; domain?: string; output?: string } = {}): string {
    return this.nodeN(opType, inputs, attrs, opts.output ? [opts.output] : 1, opts)[0]!;
  }

  output(name: string, shape?: Dim[], elemType: number = DataType.FLOAT): void {
    this.graph.outputs.push(shape ? { name, type: { elemType, shape } } : { name, type: { elemType } });
  }

  model(opset = 17, extraOpsets: { domain: string; version: number }[] = []): Model {
    return {
      irVersion: 8,
      opsetImports: [{ domain: '', version: opset }, ...extraOpsets],
      producerName: 'onnx-shears',
      producerVersion: '',
      domain: '',
      modelVersion: 0,
      docString: '',
      metadata: new Map(),
      graph: this.graph,
      functions: [],
    };
  }
}
