/**
 * ModelProto <-> IR. Everything the IR does not model (unknown fields, functions, training info, sparse
 * initializers, quantization annotations, type denotations) is carried along so a load+save keeps it.
 */
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  AttributeProtoSchema, AttributeProto_AttributeType as AT, GraphProtoSchema, ModelProtoSchema, NodeProtoSchema,
  OperatorSetIdProtoSchema, StringStringEntryProtoSchema, TensorProtoSchema, TensorProto_DataLocation,
  TensorShapeProtoSchema, TensorShapeProto_DimensionSchema, TypeProtoSchema, TypeProto_TensorSchema,
  ValueInfoProtoSchema,
  type AttributeProto, type GraphProto, type ModelProto, type NodeProto, type TensorProto, type TypeProto,
  type ValueInfoProto,
} from './gen/onnx_pb.js';
import { ShearsError } from '../errors.js';
import { DataType, dtypeBits, dtypeName } from '../ir/dtype.js';
import type { Attr, Dim, Graph, Model, Node, TensorType, ValueInfo } from '../ir/graph.js';
import { isResident, lazyByteLength, lazyTensor, releaseTensor } from '../ir/lazy.js';
import { fromRawBytes, numel, storageLength, toRawBytes, typedArrayCtor, type NumericData, type Tensor } from '../ir/tensor.js';

/** Resolves TensorProto external data (location relative to the model file) to `length` bytes at `offset`. */
export type ExternalReader = (location: string, offset: number, length: number, tensor: string) => Uint8Array;

/**
 * Checks TensorProto external data now and defers reading it: a loader of the `length` bytes, and the real path
 * of the file they are in.
 */
export type LazyExternal = (location: string, offset: number, length: number, tensor: string) => { load: () => Uint8Array; file: string };

export interface DecodeOptions {
  readExternal?: ExternalReader;
  /** External data becomes lazy tensors (ir/lazy.ts), read when used; takes precedence over readExternal. */
  lazyExternal?: LazyExternal;
}

/** Tensor fields the IR keeps beside dtype/dims/data. */
export interface TensorExtra {
  name?: string;
  docString?: string;
  unknown?: unknown;
  segment?: unknown;
}

const INT64_MAX = 9223372036854775807n;
const INT64_MIN = -9223372036854775808n;

export function toInt64(v: number): bigint {
  if (Number.isSafeInteger(v)) return BigInt(v);
  if (!Number.isFinite(v)) return v > 0 ? INT64_MAX : INT64_MIN;
  if (v >= 9223372036854775807) return INT64_MAX;
  if (v <= -9223372036854775808) return INT64_MIN;
  return BigInt(Math.trunc(v));
}

const utf8 = new TextDecoder('utf-8');
const utf8enc = new TextEncoder();

// ------------------------------------------------------------------------------------------------ decode

export function decodeModel(bytes: Uint8Array, opts: DecodeOptions = {}): Model {
  let proto: ModelProto;
  try {
    proto = fromBinary(ModelProtoSchema, bytes);
  } catch (e) {
    throw new ShearsError(`not a valid ONNX model (protobuf decoding failed: ${(e as Error).message})`);
  }
  if (!proto.graph) throw new ShearsError('not a valid ONNX model (no graph)');
  if (proto.opsetImport.length === 0 && proto.graph.node.length > 0) {
    throw new ShearsError('not a valid ONNX model (no opset_import)');
  }
  const graph = decodeGraph(proto.graph, opts);
  const { graph: _g, opsetImport, metadataProps, functions, $unknown, ...rest } = proto;
  void _g;
  return {
    irVersion: Number(proto.irVersion),
    opsetImports: opsetImport.map((o) => ({ domain: o.domain, version: Number(o.version) })),
    producerName: proto.producerName,
    producerVersion: proto.producerVersion,
    domain: proto.domain,
    modelVersion: Number(proto.modelVersion),
    docString: proto.docString,
    metadata: new Map(metadataProps.map((p) => [p.key, p.value])),
    graph,
    functions,
    extra: { trainingInfo: rest.trainingInfo, unknown: $unknown },
  };
}

export function decodeGraph(g: GraphProto, opts: DecodeOptions): Graph {
  const initializers = new Map<string, Tensor>();
  for (const t of g.initializer) initializers.set(t.name, decodeTensor(t, opts));
  const valueInfo = new Map<string, ValueInfo>();
  for (const v of g.valueInfo) valueInfo.set(v.name, decodeValueInfo(v));
  return {
    name: g.name,
    nodes: g.node.map((n) => decodeNode(n, opts)),
    inputs: g.input.map(decodeValueInfo),
    outputs: g.output.map(decodeValueInfo),
    initializers,
    valueInfo,
    ...(g.docString ? { docString: g.docString } : {}),
    extra: { sparseInitializer: g.sparseInitializer, quantizationAnnotation: g.quantizationAnnotation, unknown: g.$unknown },
  };
}

function decodeNode(n: NodeProto, opts: DecodeOptions): Node {
  const attrs = new Map<string, Attr>();
  for (const a of n.attribute) attrs.set(a.name, decodeAttr(a, n, opts));
  return {
    name: n.name,
    opType: n.opType,
    domain: n.domain === 'ai.onnx' ? '' : n.domain,
    inputs: [...n.input],
    outputs: [...n.output],
    attrs,
    ...(n.docString ? { docString: n.docString } : {}),
    ...(n.$unknown ? { extra: { unknown: n.$unknown, domain: n.domain } } : n.domain === 'ai.onnx' ? { extra: { domain: n.domain } } : {}),
  };
}

function decodeAttr(a: AttributeProto, n: NodeProto, opts: DecodeOptions): Attr {
  if (a.refAttrName || a.$unknown || a.docString) return { kind: 'opaque', value: a };
  let type = a.type as number;
  if (type === AT.UNDEFINED) type = guessAttrType(a);
  switch (type) {
    case AT.FLOAT: return { kind: 'float', value: a.f };
    case AT.INT: return { kind: 'int', value: Number(a.i) };
    case AT.STRING: return { kind: 'string', value: utf8.decode(a.s) };
    case AT.TENSOR:
      if (!a.t) throw new ShearsError(`attribute '${a.name}' of ${n.opType} has no tensor`, { node: n.name });
      return { kind: 'tensor', value: decodeTensor(a.t, opts) };
    case AT.GRAPH:
      if (!a.g) throw new ShearsError(`attribute '${a.name}' of ${n.opType} has no graph`, { node: n.name });
      return { kind: 'graph', value: decodeGraph(a.g, opts) };
    case AT.FLOATS: return { kind: 'floats', value: [...a.floats] };
    case AT.INTS: return { kind: 'ints', value: a.ints.map(Number) };
    case AT.STRINGS: return { kind: 'strings', value: a.strings.map((s) => utf8.decode(s)) };
    case AT.TENSORS: return { kind: 'tensors', value: a.tensors.map((t) => decodeTensor(t, opts)) };
    case AT.GRAPHS: return { kind: 'graphs', value: a.graphs.map((g) => decodeGraph(g, opts)) };
    default: return { kind: 'opaque', value: a };
  }
}

function guessAttrType(a: AttributeProto): number {
  if (a.ints.length) return AT.INTS;
  if (a.floats.length) return AT.FLOATS;
  if (a.strings.length) return AT.STRINGS;
  if (a.t) return AT.TENSOR;
  if (a.g) return AT.GRAPH;
  if (a.s.length) return AT.STRING;
  if (a.i !== 0n) return AT.INT;
  if (a.f !== 0) return AT.FLOAT;
  return AT.UNDEFINED;
}

function decodeDims(t: TensorProto, where: string): number[] {
  return t.dims.map((d) => {
    if (d < 0n || d > 0x7fffffffn) throw new ShearsError(`tensor '${where}' has an invalid dimension ${d}`);
    return Number(d);
  });
}

/** An external-data offset or length: a decimal byte count. */
function byteCount(value: string, key: string, where: string): number {
  const v = /^\d{1,16}$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(v)) throw new ShearsError(`tensor '${where}' has external data ${key} '${value}', not a byte count`);
  return v;
}

export function decodeTensor(t: TensorProto, opts: DecodeOptions): Tensor & TensorExtra {
  const dims = decodeDims(t, t.name);
  const n = numel(dims);
  const dtype = t.dataType;
  const where = t.name || '(unnamed tensor)';
  if (!Number.isSafeInteger(n)) throw new ShearsError(`tensor '${where}' has dims [${dims.join(', ')}]: more elements than any tensor can hold`);
  const extra: TensorExtra = {};
  if (t.name) extra.name = t.name;
  if (t.docString) extra.docString = t.docString;
  if (t.$unknown) extra.unknown = t.$unknown;
  if (t.segment) extra.segment = t.segment;
  if (dtype === DataType.STRING) {
    if (t.stringData.length !== n) throw new ShearsError(`tensor '${where}' holds ${t.stringData.length} strings for ${n} elements`);
    return { dtype, dims, data: [...t.stringData], ...extra };
  }
  const Ctor = typedArrayCtor(dtype);
  if (!Ctor) throw new ShearsError(`tensor '${where}' has unsupported data type ${dtypeName(dtype)}`);
  const len = storageLength(dtype, n);
  // A corrupt file can claim huge dims: never allocate more than the file could have held.
  let data: NumericData;
  try {
    if (t.dataLocation === TensorProto_DataLocation.EXTERNAL) {
      const kv = new Map(t.externalData.map((e) => [e.key, e.value]));
      const location = kv.get('location');
      if (!location) throw new ShearsError(`tensor '${where}' has external data without a location`);
      if (!opts.readExternal && !opts.lazyExternal) throw new ShearsError(`tensor '${where}' has external data ('${location}'), which needs the model's file path`);
      const offset = byteCount(kv.get('offset') ?? '0', 'offset', where);
      const need = len * Ctor.BYTES_PER_ELEMENT;
      const length = kv.has('length') ? byteCount(kv.get('length')!, 'length', where) : need;
      if (length !== need) {
        throw new ShearsError(`tensor '${where}' has external data of ${length} bytes, ${dtypeName(dtype)} of dims [${dims.join(', ')}] needs ${need}`);
      }
      if (opts.lazyExternal) {
        const { load, file } = opts.lazyExternal(location, offset, length, where);
        return Object.assign(lazyTensor(dtype, dims, length, () => fromRawBytes(dtype, load(), n), { file, offset, length }), extra);
      }
      data = fromRawBytes(dtype, opts.readExternal!(location, offset, length, where), n);
    } else if (t.rawData.byteLength > 0 || n === 0) {
      data = fromRawBytes(dtype, t.rawData, n);
    } else {
      data = fromTypedFields(t, dtype, len, where);
    }
  } catch (e) {
    if (e instanceof ShearsError) throw e;
    throw new ShearsError(`tensor '${where}': ${(e as Error).message}`);
  }
  return { dtype, dims, data, ...extra };
}

function fromTypedFields(t: TensorProto, dtype: number, len: number, where: string): NumericData {
  const Ctor = typedArrayCtor(dtype)!;
  let src: ArrayLike<number | bigint>;
  switch (dtype) {
    case DataType.FLOAT: case DataType.COMPLEX64: src = t.floatData; break;
    case DataType.DOUBLE: case DataType.COMPLEX128: src = t.doubleData; break;
    case DataType.INT64: src = t.int64Data; break;
    case DataType.UINT32: case DataType.UINT64: src = t.uint64Data; break;
    default: src = t.int32Data; break;
  }
  if (src.length !== len) throw new ShearsError(`tensor '${where}' holds ${src.length} values for ${len} needed`);
  const out = new Ctor(len);
  if (out instanceof BigInt64Array || out instanceof BigUint64Array) {
    for (let i = 0; i < len; i++) out[i] = BigInt(src[i]!);
  } else {
    for (let i = 0; i < len; i++) (out as Float32Array)[i] = Number(src[i]!);
  }
  return out;
}

function decodeValueInfo(v: ValueInfoProto): ValueInfo {
  const out: ValueInfo = { name: v.name };
  if (v.docString) out.docString = v.docString;
  const tp = v.type;
  if (tp) {
    if (tp.value.case === 'tensorType') {
      const tt = tp.value.value;
      const type: TensorType = { elemType: tt.elemType };
      if (tt.shape) type.shape = tt.shape.dim.map((d): Dim => (d.value.case === 'dimValue' ? Number(d.value.value) : d.value.case === 'dimParam' ? d.value.value : null));
      out.type = type;
    } else {
      out.otherType = tp;
    }
  }
  out.extra = { origType: tp, unknown: v.$unknown };
  return out;
}

// ------------------------------------------------------------------------------------------------ encode

export interface ExternalWrite {
  /** Tensors with at least this many bytes go to the side file. */
  sizeThreshold: number;
  /** Side-file name, relative to the model file. */
  location: string;
  /** Receives each tensor's bytes; returns the offset it was written at. */
  write: (bytes: Uint8Array) => number;
  /** The offset of a tensor already in the side file (written while the model was processed), if it is. */
  placed?: (t: Tensor) => number | undefined;
}

export interface EncodeOptions {
  external?: ExternalWrite;
}

export function encodeModel(model: Model, opts: EncodeOptions = {}): Uint8Array {
  return toBinary(ModelProtoSchema, modelToProto(model, opts));
}

export function modelToProto(model: Model, opts: EncodeOptions = {}): ModelProto {
  const extra = (model.extra ?? {}) as { trainingInfo?: ModelProto['trainingInfo']; unknown?: ModelProto['$unknown'] };
  const m = create(ModelProtoSchema, {
    irVersion: BigInt(model.irVersion),
    opsetImport: model.opsetImports.map((o) => create(OperatorSetIdProtoSchema, { domain: o.domain, version: BigInt(o.version) })),
    graph: graphToProto(model.graph, opts),
    metadataProps: [...model.metadata].map(([key, value]) => create(StringStringEntryProtoSchema, { key, value })),
    functions: model.functions as ModelProto['functions'],
    trainingInfo: extra.trainingInfo ?? [],
  });
  if (model.producerName) m.producerName = model.producerName;
  if (model.producerVersion) m.producerVersion = model.producerVersion;
  if (model.domain) m.domain = model.domain;
  if (model.modelVersion) m.modelVersion = BigInt(model.modelVersion);
  if (model.docString) m.docString = model.docString;
  if (extra.unknown) m.$unknown = extra.unknown;
  return m;
}

export function graphToProto(g: Graph, opts: EncodeOptions): GraphProto {
  const extra = (g.extra ?? {}) as { sparseInitializer?: GraphProto['sparseInitializer']; quantizationAnnotation?: GraphProto['quantizationAnnotation']; unknown?: GraphProto['$unknown'] };
  const p = create(GraphProtoSchema, {
    node: g.nodes.map((n) => nodeToProto(n, opts)),
    initializer: [...g.initializers].map(([name, t]) => tensorToProto(t, name, opts)),
    input: g.inputs.map(valueInfoToProto),
    output: g.outputs.map(valueInfoToProto),
    valueInfo: [...g.valueInfo.values()].map(valueInfoToProto),
    sparseInitializer: extra.sparseInitializer ?? [],
    quantizationAnnotation: extra.quantizationAnnotation ?? [],
  });
  if (g.name) p.name = g.name;
  if (g.docString) p.docString = g.docString;
  if (extra.unknown) p.$unknown = extra.unknown;
  return p;
}

function nodeToProto(n: Node, opts: EncodeOptions): NodeProto {
  const extra = (n.extra ?? {}) as { unknown?: NodeProto['$unknown']; domain?: string };
  const p = create(NodeProtoSchema, {
    input: n.inputs,
    output: n.outputs,
    attribute: [...n.attrs].map(([name, a]) => attrToProto(name, a, opts)),
  });
  if (n.name) p.name = n.name;
  p.opType = n.opType;
  const domain = n.domain === '' && extra.domain === 'ai.onnx' ? 'ai.onnx' : n.domain;
  if (domain) p.domain = domain;
  if (n.docString) p.docString = n.docString;
  if (extra.unknown) p.$unknown = extra.unknown;
  return p;
}

function attrToProto(name: string, a: Attr, opts: EncodeOptions): AttributeProto {
  if (a.kind === 'opaque') return a.value as AttributeProto;
  const p = create(AttributeProtoSchema, { name });
  switch (a.kind) {
    case 'float': p.type = AT.FLOAT; p.f = a.value; break;
    case 'int': p.type = AT.INT; p.i = toInt64(a.value); break;
    case 'string': p.type = AT.STRING; p.s = utf8enc.encode(a.value); break;
    case 'tensor': p.type = AT.TENSOR; p.t = tensorToProto(a.value, (a.value as TensorExtra).name ?? '', {}); break;
    case 'graph': p.type = AT.GRAPH; p.g = graphToProto(a.value, opts); break;
    case 'floats': p.type = AT.FLOATS; p.floats = a.value; break;
    case 'ints': p.type = AT.INTS; p.ints = a.value.map(toInt64); break;
    case 'strings': p.type = AT.STRINGS; p.strings = a.value.map((s) => utf8enc.encode(s)); break;
    case 'tensors': p.type = AT.TENSORS; p.tensors = a.value.map((t) => tensorToProto(t, (t as TensorExtra).name ?? '', {})); break;
    case 'graphs': p.type = AT.GRAPHS; p.graphs = a.value.map((g) => graphToProto(g, opts)); break;
  }
  return p;
}

export function tensorToProto(t: Tensor, name: string, opts: EncodeOptions): TensorProto {
  const extra = t as Tensor & TensorExtra;
  const p = create(TensorProtoSchema, { dims: t.dims.map((d) => BigInt(d)), dataType: t.dtype });
  if (name) p.name = name;
  if (extra.docString) p.docString = extra.docString;
  if (extra.unknown) p.$unknown = extra.unknown as TensorProto['$unknown'];
  const ext = opts.external;
  const at = ext?.placed?.(t);
  if (at !== undefined) {
    p.dataLocation = TensorProto_DataLocation.EXTERNAL;
    p.externalData = [
      create(StringStringEntryProtoSchema, { key: 'location', value: ext!.location }),
      create(StringStringEntryProtoSchema, { key: 'offset', value: String(at) }),
      create(StringStringEntryProtoSchema, { key: 'length', value: String(tensorByteLength(t)) }),
    ];
    return p;
  }
  // a lazy tensor written to a side file is read for the write and released after it: one tensor at a time
  const passing = ext !== undefined && !isResident(t);
  if (Array.isArray(t.data)) {
    p.stringData = t.data;
  } else {
    const bytes = toRawBytes(t.data);
    if (ext && bytes.byteLength >= ext.sizeThreshold) {
      const offset = ext.write(bytes);
      if (passing) releaseTensor(t);
      p.dataLocation = TensorProto_DataLocation.EXTERNAL;
      p.externalData = [
        create(StringStringEntryProtoSchema, { key: 'location', value: ext.location }),
        create(StringStringEntryProtoSchema, { key: 'offset', value: String(offset) }),
        create(StringStringEntryProtoSchema, { key: 'length', value: String(bytes.byteLength) }),
      ];
    } else if (bytes.byteLength > 0) {
      p.rawData = bytes;
    }
  }
  return p;
}

function valueInfoToProto(v: ValueInfo): ValueInfoProto {
  const extra = (v.extra ?? {}) as { origType?: TypeProto; unknown?: ValueInfoProto['$unknown'] };
  const p = create(ValueInfoProtoSchema, { name: v.name });
  if (v.docString) p.docString = v.docString;
  if (extra.unknown) p.$unknown = extra.unknown;
  if (v.type) {
    const orig = extra.origType;
    if (orig && orig.value.case === 'tensorType' && sameTensorType(orig, v.type)) p.type = orig;
    else p.type = tensorTypeToProto(v.type, orig);
  } else if (v.otherType) {
    p.type = v.otherType as TypeProto;
  }
  return p;
}

function sameTensorType(orig: TypeProto, t: TensorType): boolean {
  if (orig.value.case !== 'tensorType') return false;
  const tt = orig.value.value;
  if (tt.elemType !== t.elemType) return false;
  if (!tt.shape) return t.shape === undefined;
  if (!t.shape || t.shape.length !== tt.shape.dim.length) return false;
  return tt.shape.dim.every((d, i) => {
    const x = t.shape![i];
    if (d.value.case === 'dimValue') return x === Number(d.value.value);
    if (d.value.case === 'dimParam') return x === d.value.value;
    return x === null;
  });
}

function tensorTypeToProto(t: TensorType, orig?: TypeProto): TypeProto {
  const tt = create(TypeProto_TensorSchema, { elemType: t.elemType });
  if (t.shape) {
    tt.shape = create(TensorShapeProtoSchema, {
      dim: t.shape.map((d) =>
        create(TensorShapeProto_DimensionSchema,
          typeof d === 'number' ? { value: { case: 'dimValue', value: BigInt(d) } } : typeof d === 'string' ? { value: { case: 'dimParam', value: d } } : {})),
    });
  }
  const tp = create(TypeProtoSchema, { value: { case: 'tensorType', value: tt } });
  if (orig?.denotation) tp.denotation = orig.denotation;
  return tp;
}

/** Bytes of tensor storage (what raw_data would hold). */
export function tensorByteLength(t: Tensor): number {
  const lazy = lazyByteLength(t);
  if (lazy !== undefined) return lazy;
  if (Array.isArray(t.data)) return t.data.reduce((s, b) => s + b.byteLength, 0);
  return t.data.byteLength;
}

export { dtypeBits };
