/** The node emitter gradient rules write into (implements ops/types.ts GradEmitter). */
import { toAttr, type AttrInit } from '../ir/builder.js';
import { DataType } from '../ir/dtype.js';
import type { Node } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import type { GradAttr, GradEmitter } from '../ops/types.js';

export class Emitter implements GradEmitter {
  readonly nodes: Node[] = [];
  readonly initializers = new Map<string, Tensor>();
  /** Static shapes of emitted values, where the emitter knows them (constants). */
  readonly shapes = new Map<string, number[]>();
  private counter = 0;
  constructor(
    readonly elemType: number,
    private readonly taken: Set<string>,
    private readonly prefix = 'grad/',
  ) {}

  name(base: string): string {
    let n: string;
    do n = `${this.prefix}${base}_${this.counter++}`;
    while (this.taken.has(n));
    this.taken.add(n);
    return n;
  }

  opN(opType: string, inputs: string[], attrs: Record<string, GradAttr> = {}, outputs = 1): string[] {
    const name = this.name(opType);
    const outs = Array.from({ length: outputs }, (_, i) => (outputs === 1 ? name : `${name}:${i}`));
    for (const o of outs) this.taken.add(o);
    this.nodes.push({
      name,
      opType,
      domain: '',
      inputs,
      outputs: outs,
      attrs: new Map(Object.entries(attrs).map(([k, v]) => [k, toAttr(v as AttrInit)])),
    });
    return outs;
  }

  op(opType: string, inputs: string[], attrs: Record<string, GradAttr> = {}): string {
    return this.opN(opType, inputs, attrs, 1)[0]!;
  }

  constF(values: number | number[], dims?: number[]): string {
    const vals = typeof values === 'number' ? [values] : values;
    const d = dims ?? (typeof values === 'number' ? [] : [vals.length]);
    const data = this.elemType === DataType.DOUBLE ? Float64Array.from(vals) : Float32Array.from(vals);
    return this.constT({ dtype: this.elemType === DataType.DOUBLE ? DataType.DOUBLE : DataType.FLOAT, dims: d, data });
  }

  constI(values: number[], dims?: number[]): string {
    const data = BigInt64Array.from(values.map((v) => BigInt(v)));
    return this.constT({ dtype: DataType.INT64, dims: dims ?? [values.length], data });
  }

  constT(t: Tensor): string {
    const n = this.name('const');
    this.initializers.set(n, t);
    this.shapes.set(n, t.dims);
    return n;
  }
}
