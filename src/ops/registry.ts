/**
 * The op table. Each op family lives in its own module under ops/; this file only lists them. A missing entry
 * means shears does not know the op: analysis reports it (by node) instead of guessing.
 */
import type { Node } from '../ir/graph.js';
import type { OpDef } from './types.js';

export const OPS = {
  // filled in by the op family modules
} satisfies Record<string, OpDef>;

const table: Record<string, OpDef> = OPS;

/** The definition of a node's op, or undefined for unknown ops and non-standard domains. */
export function opDef(node: Node): OpDef | undefined {
  if (node.domain !== '' && node.domain !== 'ai.onnx') return undefined;
  return Object.prototype.hasOwnProperty.call(table, node.opType) ? table[node.opType] : undefined;
}
