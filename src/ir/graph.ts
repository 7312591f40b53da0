import type { Tensor } from './tensor.js';

/** A dimension: a fixed size, a symbolic name (e.g. a dynamic batch), or unknown. */
export type Dim = number | string | null;

export interface TensorType {
  elemType: number;
  /** undefined: rank unknown. */
  shape?: Dim[];
}

/**
 * A graph input, output or annotated intermediate value. `type` is absent for typeless value infos and for
 * non-tensor types, whose protobuf form is kept in `otherType` untouched.
 */
export interface ValueInfo {
  name: string;
  type?: TensorType;
  otherType?: unknown;
  docString?: string;
  /** Protobuf fields this codec does not model (kept for the round trip). */
  extra?: unknown;
}

export type Attr =
  | { kind: 'float'; value: number }
  | { kind: 'int'; value: number }
  | { kind: 'string'; value: string }
  | { kind: 'tensor'; value: Tensor }
  | { kind: 'graph'; value: Graph }
  | { kind: 'floats'; value: number[] }
  | { kind: 'ints'; value: number[] }
  | { kind: 'strings'; value: string[] }
  | { kind: 'tensors'; value: Tensor[] }
  | { kind: 'graphs'; value: Graph[] }
  /** Attribute kinds kept as protobuf (sparse tensors, type protos, function attribute references). */
  | { kind: 'opaque'; value: unknown };

export interface Node {
  name: string;
  opType: string;
  /** '' is the default ONNX domain. */
  domain: string;
  /** '' marks an omitted optional input or output. */
  inputs: string[];
  outputs: string[];
  attrs: Map<string, Attr>;
  docString?: string;
  extra?: unknown;
}

export interface Graph {
  name: string;
  nodes: Node[];
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  initializers: Map<string, Tensor>;
  valueInfo: Map<string, ValueInfo>;
  docString?: string;
  extra?: unknown;
}

export interface OpsetImport {
  domain: string;
  version: number;
}

export interface Model {
  irVersion: number;
  opsetImports: OpsetImport[];
  producerName: string;
  producerVersion: string;
  domain: string;
  modelVersion: number;
  docString: string;
  metadata: Map<string, string>;
  graph: Graph;
  /** FunctionProtos and training info, kept as protobuf messages (not analysed, never broken). */
  functions: unknown[];
  extra?: unknown;
}

export function emptyGraph(name = 'graph'): Graph {
  return { name, nodes: [], inputs: [], outputs: [], initializers: new Map(), valueInfo: new Map() };
}

export function opsetVersion(model: Model, domain = ''): number {
  const d = domain === 'ai.onnx' ? '' : domain;
  for (const o of model.opsetImports) if ((o.domain === 'ai.onnx' ? '' : o.domain) === d) return o.version;
  return 0;
}

// ---------------------------------------------------------------------------------------------- attributes

export function attrInt(node: Node, name: string, dflt: number): number;
export function attrInt(node: Node, name: string): number | undefined;
export function attrInt(node: Node, name: string, dflt?: number): number | undefined {
  const a = node.attrs.get(name);
  if (a === undefined) return dflt;
  if (a.kind === 'int') return a.value;
  if (a.kind === 'float') return a.value;
  throw new Error(`attribute ${name} of ${node.opType} is ${a.kind}, expected int`);
}

export function attrFloat(node: Node, name: string, dflt: number): number {
  const a = node.attrs.get(name);
  if (a === undefined) return dflt;
  if (a.kind === 'float' || a.kind === 'int') return a.value;
  throw new Error(`attribute ${name} of ${node.opType} is ${a.kind}, expected float`);
}

export function attrInts(node: Node, name: string): number[] | undefined {
  const a = node.attrs.get(name);
  if (a === undefined) return undefined;
  if (a.kind === 'ints') return a.value;
  if (a.kind === 'int') return [a.value];
  throw new Error(`attribute ${name} of ${node.opType} is ${a.kind}, expected ints`);
}

export function attrFloats(node: Node, name: string): number[] | undefined {
  const a = node.attrs.get(name);
  if (a === undefined) return undefined;
  if (a.kind === 'floats' || a.kind === 'ints') return a.value;
  throw new Error(`attribute ${name} of ${node.opType} is ${a.kind}, expected floats`);
}

export function attrString(node: Node, name: string, dflt: string): string {
  const a = node.attrs.get(name);
  if (a === undefined) return dflt;
  if (a.kind === 'string') return a.value;
  throw new Error(`attribute ${name} of ${node.opType} is ${a.kind}, expected string`);
}

export function attrTensor(node: Node, name: string): Tensor | undefined {
  const a = node.attrs.get(name);
  return a?.kind === 'tensor' ? a.value : undefined;
}

export function setAttr(node: Node, name: string, attr: Attr): void {
  node.attrs.set(name, attr);
}

/** The subgraphs held in a node's attributes (If branches, Loop/Scan bodies). */
export function subgraphs(node: Node): Graph[] {
  const out: Graph[] = [];
  for (const a of node.attrs.values()) {
    if (a.kind === 'graph') out.push(a.value);
    else if (a.kind === 'graphs') out.push(...a.value);
  }
  return out;
}
