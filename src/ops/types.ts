/**
 * What shears knows about one ONNX operator, in one place: its shape rule, constant folding, cost, and (added by
 * the pruning and training stages) channel couplings, surgery and gradient. Shared passes look ops up in the
 * registry (ops/registry.ts) and never branch on op names.
 */
import type { Node, TensorType } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';

export interface InferContext {
  readonly node: Node;
  /** Opset version of the node's domain. */
  readonly opset: number;
  /** Number of inputs (including omitted optional ones, which read as undefined). */
  readonly inputCount: number;
  /** Type of input i; undefined when omitted or unknown. */
  input(i: number): TensorType | undefined;
  /** Value of input i when it is an initializer or a folded constant. */
  constant(i: number): Tensor | undefined;
}

export interface Cost {
  /** Multiply-accumulates (Conv, ConvTranspose, Gemm, MatMul, ...). */
  macs: number;
  /** Other arithmetic (elementwise, normalisation, pooling, softmax, ...), in floating-point operations. */
  flops: number;
}

export interface CostContext extends InferContext {
  output(i: number): TensorType | undefined;
}

export interface OpDef {
  /**
   * Output types, one per node output (undefined where unknown). Throws a ShearsError when the inputs cannot
   * fit the op (rank, channel count, broadcasting).
   */
  infer(ctx: InferContext): (TensorType | undefined)[];
  /**
   * Evaluates the op when every input it needs is constant. Used for shape arithmetic and small constant
   * subgraphs, not bulk tensor math. Returns undefined when it cannot (or should not) fold.
   */
  fold?(ctx: InferContext, inputs: (Tensor | undefined)[]): Tensor[] | undefined;
  /** Compute cost with known input/output types. Absent: zero. */
  cost?(ctx: CostContext): Cost;
  /**
   * Input indices that hold learnable parameters (weights, biases, norm scales) when fed by float
   * initializers. Absent: none (shape constants, indices, scalars are not parameters).
   */
  paramInputs?: readonly number[];
  /** Output is the input unchanged up to dtype-preserving data movement (Identity, Dropout at inference). */
  passthrough?: boolean;
}

/** Where a layer's weight sits among its inputs and which weight axes mean what. */
export interface WeightSpec {
  /** Input index of the weight tensor. */
  input: number;
  /** Axis of the weight that indexes output channels/features. */
  outAxis: number;
  /** Axis of the weight along which the layer reduces (input channels/features): N:M groups run along it. */
  inAxis: number;
  /** Input index of the bias, when the op has one. */
  bias?: number;
}

export interface LayerOpDef extends OpDef {
  /** The weight layout of a node of this op, or undefined when the node has no weight in this sense. */
  weight(node: Node): WeightSpec | undefined;
}
