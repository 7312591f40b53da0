/**
 * What shears knows about one ONNX operator, in one place: its shape rule, constant folding, cost, and (added by
 * the pruning and training stages) channel couplings, surgery and gradient. Shared passes look ops up in the
 * registry (ops/registry.ts) and never branch on op names.
 */
import type { Dim, Node, TensorType } from '../ir/graph.js';
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
  /**
   * Elements of a small integer input (a shape, axes, sizes), flattened, when known element by element:
   * numbers where fixed, symbols where they copy a symbolic dimension (e.g. Shape(x)[0] = 'N'), null where
   * unknown. Undefined when the input is not such a value.
   */
  value(i: number): Dim[] | undefined;
  /**
   * What analysis inferred for output i of the subgraph held in graph attribute `attr` (If branches): its type
   * and, when it folds, its value. Absent where the caller does not analyse subgraphs.
   */
  subgraphOutput?(attr: string, i: number): { type?: TensorType; constant?: Tensor } | undefined;
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
  /** Quantized compute op (QLinearConv, MatMulInteger, ...): its paramInputs hold integer weights and biases. */
  integerParams?: boolean;
  /** Output is the input unchanged up to dtype-preserving data movement (Identity, Dropout at inference). */
  passthrough?: boolean;
  /**
   * An elementwise nonlinearity (Relu, Clip, Sigmoid, ...): where a Conv feeds one directly and the network has no
   * BatchNormalization, the exporter folded BN into the Conv (train/bn.ts, detectFoldedBatchNorm).
   */
  activation?: boolean;
  /**
   * Normalises each position over its features (LayerNormalization, RMS norms): a network built on it is a
   * transformer, whose fine-tuning defaults differ from a CNN's (pipeline/finetune.ts finetuneChoices).
   */
  featureNorm?: boolean;
  /**
   * Normalises its input into a probability distribution along one axis (Softmax, LogSoftmax): that axis. Between
   * a detector's last learned layer and its output this is the DFL box-bin decoding, by which analysis/detector.ts
   * recognises the pre-decode head.
   */
  distributionAxis?(ctx: InferContext, rank: number): number;
  /**
   * Output 0 is input 0 dequantized (DequantizeLinear): when input 0 is a stored (integer) weight, the consumers'
   * float weight is that stored tensor, and it counts as their parameter in its stored encoding.
   */
  dequantizes?: boolean;
  /**
   * Control flow whose path is known from constant inputs (If with a constant condition): the name of the graph
   * attribute holding the subgraph the node is equivalent to (its outputs in the node's output order). simplify
   * inlines that subgraph into the enclosing graph.
   */
  inline?(ctx: InferContext): string | undefined;
  /** Outputs differ from run to run (random ops): never folded to constants, not even by onnxruntime. */
  nondeterministic?: boolean;
  /** Produces quantized values (QuantizeLinear, DynamicQuantizeLinear): its presence means the model is quantized. */
  quantized?: boolean;
  /** fold only copies or views existing data (Constant, Identity, Reshape): exempt from the folding size limit. */
  foldCopies?: boolean;
  /**
   * Element values of small integer outputs (see InferContext.value) from the inputs' values and shapes: the
   * symbolic side of shape arithmetic (Shape, Gather, Concat, ...). Entries may be undefined.
   */
  symbolic?(ctx: InferContext): (Dim[] | undefined)[] | undefined;
  /**
   * A constant that may replace a non-constant (symbolic) input of this node without changing the result for
   * any value of the symbols (e.g. Reshape's shape [N,-1] taken from Shape(x) becomes [0,-1]). Used by simplify.
   */
  concretize?(ctx: InferContext): { input: number; tensor: Tensor } | undefined;
  /**
   * Reverse-mode gradient rule (autodiff/): emits standard ONNX nodes that compute the gradients of the
   * node's inputs from the gradients of its outputs. Absent: the op is not differentiable by shears.
   */
  grad?: GradRule;
  /** Why the op has no gradient rule and what to do instead, for the refusal when a user trains through it. */
  noGrad?: string;
  /**
   * Channel couplings for structured pruning (depgraph/): which axes of the node's inputs and outputs must lose
   * the same indices together, with index mappings. Absent: shears cannot reason about the op, and every
   * prunable axis that touches it is frozen (with the reason in the report).
   */
  channels?: ChannelRule;
  /**
   * Pruning surgery beyond slicing initializers (done generically): fix attributes and constant inputs
   * (group counts, Split sizes, Slice bounds, Reshape targets) after indices were removed from the node's
   * tensors. Returns a reason when it cannot, which freezes the touched channels instead.
   */
  prune?: PruneRule;
  /** An elementwise sum whose summands may be dropped (depth pruning removes a residual branch at it). */
  residualJoin?: boolean;
  /**
   * The layer as a grouped matrix product (repair/: least squares, OBS/SparseGPT, Wanda): its weight as
   * [groups][out][k] and graph fragments that turn its data input into patch matrices. Absent: not repairable.
   */
  linear?: LinearRule;
  /**
   * How the op takes part in int8 QDQ quantization and fp16 conversion (quant/). Absent: the node stays float
   * and its tensors get no Q/DQ (onnxruntime runs it in float between DequantizeLinear and QuantizeLinear).
   */
  quant?: QuantRule;
  /**
   * Lowering to onnxruntime's blocked-channel (NCHWc) CPU kernels where onnxruntime cannot do it itself because
   * the weight is not a constant (training graphs feed their weights): replacement nodes computing the node's
   * outputs, or undefined to keep the node (autodiff/nchwc.ts).
   */
  nchwc?: NchwcRule;
  /**
   * onnxruntime's own NCHWc transformer (nchwc_transformer.cc) on a node whose data inputs are in the blocked
   * layout: whether it runs there and its output stays blocked (an activation, Add, a pool or channel Concat at
   * whole blocks). Absent: onnxruntime reorders its input back to NCHW first. The latency model
   * (plan/latency-model.ts) counts such reorders as costs the whole model pays.
   */
  nchwcKeeps?: (ctx: NchwcLayoutContext) => boolean;
}

export interface NchwcLayoutContext {
  node: Node;
  /** onnxruntime's channel block on this CPU (16 with AVX-512). */
  block: number;
  /** The channel count (axis 1) of a value, when known. */
  channels(value: string): number | undefined;
  /** Whether a value is the output of the segment's blocked convolution itself (activations fuse into it). */
  fromConv(value: string): boolean;
}

export interface NchwcContext {
  /** onnxruntime's NCHWc channel block on this CPU (8 with AVX2, 16 with AVX-512). */
  readonly block: number;
  /** Static dims of a value, when known. */
  shape(name: string): number[] | undefined;
  /** Element type of a value, when known. */
  elemType(name: string): number | undefined;
  /** A fresh value or node name. */
  fresh(base: string): string;
  /** Name of a new int64 initializer holding `values` (shape vectors, axes). */
  int64(values: number[]): string;
}

export type NchwcRule = (node: Node, ctx: NchwcContext) => Node[] | undefined;

// ---------------------------------------------------------------------------------------------- quantization

/**
 * The role of an op in QDQ quantization:
 * - 'compute': onnxruntime runs it as an integer kernel when its activation inputs and its output are wrapped in
 *   DequantizeLinear/QuantizeLinear (Conv -> QLinearConv, MatMul -> QLinearMatMul, Add -> QLinearAdd, ...);
 *   each of `inputs` is quantized (initializers as weights, per channel along the weight spec's output axis
 *   where the op is a layer op), the output gets its own calibrated scale;
 * - 'move': the output holds input values rearranged or selected (MaxPool, Reshape, Transpose, Resize, ...): it
 *   is quantized with the input's scale and zero point when the input is quantized, so onnxruntime can drop the
 *   Q/DQ pair or run the op on uint8 directly;
 * - 'clamp': a clamp-like activation (Relu, Clip) that a QuantizeLinear right after it implements when the
 *   quantized range starts at the clamp's lower bound: the producer's output is not quantized, the clamp's is,
 *   and onnxruntime folds the clamp into the producer's integer kernel.
 */
export interface QuantRule {
  /** Role in QDQ quantization (absent: none; the rule carries only the fields below). */
  kind?: 'compute' | 'move' | 'clamp';
  /** Inputs quantized (activations or constant operands); default [0]. 'all': every input. */
  inputs?: readonly number[] | 'all';
  /** Input index of a bias stored as int32 with scale s_input0 * s_weight (Conv B, Gemm C). */
  bias?: number;
  /** Inputs that must stay float32 when the model is converted to fp16 (Resize scales/roi, ...). */
  keepFloat32?: readonly number[];
  /** Attribute naming an output element type (Cast 'to'): a float32 target becomes float16 in fp16 conversion. */
  castTo?: string;
  /**
   * True when the node computes alpha * X @ W (+ beta * bias) with X = input 0 as it is (reduced along its last
   * axis) and W, alpha, beta, bias as its LinearRule form gives them: dynamic int8 (MatMulInteger) and weight-only
   * int4 (MatMulNBits) rewrite such nodes.
   */
  matmul?: (node: Node) => boolean;
}

// ------------------------------------------------------------------------------------- structured pruning

/** One axis of a node input or output. */
export interface AxisRef {
  io: 'in' | 'out';
  /** Input or output position. */
  index: number;
  axis: number;
}

/**
 * Ties indices of axis `a` to indices of axis `b`: element j of b is tied to element map[j] of a (-1: to none).
 * Omitted map: identity (the axes have equal sizes). Tied indices are removed together.
 */
export interface ChannelLink {
  a: AxisRef;
  b: AxisRef;
  map?: Int32Array;
  /**
   * Role of a parameter axis among the two (for exactness checks and reports): 'reads' when the weight
   * consumes the channel (Conv W axis 1), 'writes' when it produces it (Conv W axis 0).
   */
  role?: 'reads' | 'writes';
}

export interface ChannelContext {
  readonly node: Node;
  readonly opset: number;
  /** Static shape of input i (numbers; symbolic dims read as -1), undefined when unknown or omitted. */
  inShape(i: number): number[] | undefined;
  outShape(i: number): number[] | undefined;
  /** Value of input i when constant. */
  constant(i: number): Tensor | undefined;
  /**
   * What a split of one axis into blocks x positions (hidden -> heads x head_dim, channels -> groups x
   * channels per group) prunes first: whole blocks (attention heads, default) or the same positions in
   * every block (head_dim entries). The other is the rule's alternative.
   */
  readonly splitUnits?: SplitUnits;
  /**
   * Whether axes that a normalisation averages over (LayerNormalization's normalised axes, the ReduceMean of a
   * decomposed RMSNorm) may lose features: the hidden size of a transformer's residual stream. The statistics
   * change, so removal is not exact and repair or fine-tuning should follow. Default false: those axes freeze.
   */
  readonly normalized?: boolean;
}

export type SplitUnits = 'blocks' | 'positions';

export interface ChannelInfo {
  links: ChannelLink[];
  /** Axes that may lose indices without any link (e.g. a reduced axis of ReduceSum). */
  free?: AxisRef[];
  /** Axes (or some of their indices) that must keep every index, with the reason. */
  frozen?: { ref: AxisRef; indices?: number[]; reason: string }[];
  /**
   * Other valid couplings of the same node, in order of preference. The dependency graph uses this one first;
   * where it leaves an axis of this node frozen (the neighbours tie that axis in a way this coupling does not),
   * it tries the next, and keeps the change when more parameters become prunable (a Reshape that splits
   * channels into groups can tie whole groups or positions within groups).
   */
  alternatives?: ChannelInfo[];
}

/** Returns the couplings of a node, or a reason why the op cannot take part (freezes every touched axis). */
export type ChannelRule = (ctx: ChannelContext) => ChannelInfo | string;

export interface PruneContext extends ChannelContext {
  /** Indices kept on an axis of input/output i (sorted), or undefined when that axis keeps all. */
  kept(io: 'in' | 'out', index: number, axis: number): Int32Array | undefined;
  /** Replaces a constant input with a new tensor (a fresh initializer; the old one is never modified). */
  setConstant(i: number, t: Tensor): void;
}

export type PruneRule = (ctx: PruneContext) => string | void;

/** Emits nodes into a gradient graph (implemented in autodiff/emitter.ts). */
export interface GradEmitter {
  /** Float element type of the graph being differentiated (constants are made in it). */
  readonly elemType: number;
  /** Adds a node, returns its output names. */
  opN(opType: string, inputs: string[], attrs?: Record<string, GradAttr>, outputs?: number): string[];
  /** Adds a single-output node, returns its output name. */
  op(opType: string, inputs: string[], attrs?: Record<string, GradAttr>): string;
  /** A float constant of elemType (scalar when dims is omitted and there is one value). */
  constF(values: number | number[], dims?: number[]): string;
  /** An int64 constant (1-D unless dims says otherwise). */
  constI(values: number[], dims?: number[]): string;
  /** A constant tensor as it is. */
  constT(t: Tensor): string;
}

/** Attribute values accepted by GradEmitter (numbers: int when integral, unless wrapped with F()). */
export type GradAttr = number | number[] | string | string[] | Tensor | { kind: 'float'; value: number } | { kind: 'floats'; value: number[] };

export interface GradContext {
  readonly node: Node;
  readonly opset: number;
  readonly e: GradEmitter;
  /** Name of forward input i ('' when omitted). */
  input(i: number): string;
  /** Name of forward output i; ensures the forward node computes it (e.g. MaxPool Indices). */
  output(i: number): string;
  /** Gradient of the loss w.r.t. output i, or undefined when nothing downstream needs it (zero). */
  gradOut(i: number): string | undefined;
  /** Whether the gradient of input i is wanted. */
  needs(i: number): boolean;
  /** Static shape of a forward or emitted value. */
  shape(name: string): number[];
  /** Element type of a forward value, when known. */
  elemType(name: string): number | undefined;
  /** Value of a forward input when it is a constant (initializer). */
  constant(i: number): Tensor | undefined;
}

/** Returns, per input, the name of its gradient (undefined where not needed or not differentiable). */
export type GradRule = (ctx: GradContext) => (string | undefined)[];

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
  /**
   * The weight layout of a node of this op, or undefined when the node has no weight in this sense. With
   * `weightDims` (the weight's dims), also undefined when the weight does not have the layout's rank (e.g.
   * MatMul whose second input is not 2-D).
   */
  weight(node: Node, weightDims?: readonly number[]): WeightSpec | undefined;
  /**
   * Every weight of the node that unstructured pruning sparsifies, when the node has more than `weight` (W and R
   * of a recurrent layer). Absent: the one from `weight`.
   */
  weights?(node: Node): WeightSpec[];
}

// ---------------------------------------------------------------------------------------------- repair

/**
 * A weighted layer as a matrix product per group g: Y[g][o, m] = alpha * sum_k W[g][o, k] * P[g][k, m] + beta * bias,
 * where m runs over batch x output positions and P holds the input patches (im2col for convolutions).
 */
export interface LinearForm {
  groups: number;
  /** Reduction length per group: input channels per group x kernel positions. */
  k: number;
  /** Output channels/features per group. */
  outPerGroup: number;
  /** Kernel positions per input channel (1 for matrix products): reduction index k = c * kernel + s. */
  kernel: number;
  /** Element index in the weight tensor of (group g, output o within the group, reduction index k). */
  weightIndex(g: number, o: number, k: number): number;
  /** Input index of the bias (absent: the op has none, or `addBias` can create one). */
  bias?: number;
  /** Output scale of the weight product (Gemm alpha) and of the bias (Gemm beta); 1 elsewhere. */
  alpha: number;
  beta: number;
}

/** What a linear rule sees of a node: the same static view as a channel rule. */
export type LinearContext = ChannelContext;

export interface LinearRule {
  /** The layer's form, or a reason why it cannot be treated as one (e.g. a non-constant weight). */
  form(ctx: LinearContext): LinearForm | string;
  /** Emits P [groups, k, M] (float) from `x`, a value shaped like the node's data input. */
  patches(ctx: LinearContext, form: LinearForm, e: GradEmitter, x: string): string;
  /** Emits `y` (a value shaped like the node's output) as [groups, outPerGroup, M], matching `patches`' M order. */
  outputs(ctx: LinearContext, form: LinearForm, e: GradEmitter, y: string): string;
  /**
   * A bias input index to use when the node has none (Conv: 2, Gemm: 2 as C); the repair adds a zero bias
   * there. Absent: the op cannot take a bias.
   */
  addBias?: number;
  /**
   * The op takes no bias input, but its output channels lie along the output's last axis, so a [C] constant
   * added right after it is its bias (MatMul: nn.Linear exports as MatMul -> Add); the repair fits that constant.
   * (None is added where there is none: on tiny_llama_py, biases added after every projection and fitted gave
   * 2.2258 bits/byte against 2.2259 without, for 29 more nodes.)
   */
  biasAfter?: boolean;
}
