/** Deterministic latency tables for planner tests: the planner's logic is tested, not this machine's timings. */
import type { Model } from '../src/ir/graph.js';
import { numel } from '../src/ir/tensor.js';
import { LatencyTable } from '../src/plan/latency-table.js';

/** "Measurements" by weight count. */
export class WeightCountTable extends LatencyTable {
  override async measure(graphs: { key: string; model: () => Model }[]): Promise<void> {
    if (!this.entries.has('overhead')) this.set('overhead', 0);
    for (const g of graphs) {
      if (this.entries.has(g.key)) continue;
      let w = 0;
      for (const t of g.model().graph.initializers.values()) w += numel(t.dims);
      this.set(g.key, 0.001 + w * 1e-5);
      this.measured++;
    }
  }
}

/** Times as if channel counts ran padded to blocks of 16 (as NCHWc on AVX-512): sub-block steps save nothing. */
export class BlockTable extends LatencyTable {
  override async measure(graphs: { key: string; model: () => Model }[]): Promise<void> {
    if (!this.entries.has('overhead')) this.set('overhead', 0);
    const up = (c: number) => Math.ceil(c / 16) * 16;
    for (const g of graphs) {
      if (this.entries.has(g.key)) continue;
      let w = 0;
      for (const t of g.model().graph.initializers.values()) w += t.dims.length >= 2 ? up(t.dims[0]!) * up(t.dims[1]!) * numel(t.dims.slice(2)) : up(t.dims[0] ?? 1);
      this.set(g.key, 0.001 + w * 1e-5);
      this.measured++;
    }
  }
}
