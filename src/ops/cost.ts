/** Building blocks of cost rules (OpDef.cost). */
import { staticProd } from './dims.js';
import type { Cost, CostContext } from './types.js';

export const ZERO_COST: Cost = { macs: 0, flops: 0 };

/** Number of elements of output i when static (0 when unknown). */
export function outElems(ctx: CostContext, i = 0): number {
  return staticProd(ctx.output(i)?.shape) ?? 0;
}

/** A cost function charging `perElement` flops per element of output 0. */
export function flopsPerOutput(perElement: number): (ctx: CostContext) => Cost {
  return (ctx) => ({ macs: 0, flops: perElement * outElems(ctx) });
}
