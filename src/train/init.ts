/** Weight re-initialisation for training from scratch (seeded). */
import { DataType } from '../ir/dtype.js';
import type { Model } from '../ir/graph.js';
import { numel } from '../ir/tensor.js';
import { BN_PREFIX } from './bn.js';

function gaussian(r: () => number): () => number {
  return () => {
    const u = Math.max(r(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
  };
}

/**
 * Re-initialises float weights in place (new tensors): rank-4 (conv) weights Kaiming normal with fan_out and
 * ReLU gain (as torchvision's ResNets), rank-2 (linear) weights uniform +-1/sqrt(fan_in) (PyTorch's Linear),
 * biases 0, inserted BN scales 1 and biases 0. Returns the names touched.
 */
export function reinitialize(model: Model, names: Iterable<string>, r: () => number): string[] {
  const g = model.graph;
  const normal = gaussian(r);
  const done: string[] = [];
  for (const k of names) {
    const t = g.initializers.get(k);
    if (!t || t.dtype !== DataType.FLOAT) continue;
    const n = numel(t.dims);
    const data = new Float32Array(n);
    if (k.startsWith(BN_PREFIX)) {
      if (k.endsWith('/scale') || k.endsWith('/var')) data.fill(1);
    } else if (t.dims.length >= 3) {
      const fanOut = t.dims[0]! * numel(t.dims.slice(2));
      const std = Math.sqrt(2 / fanOut);
      for (let i = 0; i < n; i++) data[i] = normal() * std;
    } else if (t.dims.length === 2) {
      const bound = 1 / Math.sqrt(t.dims[1]!);
      for (let i = 0; i < n; i++) data[i] = (r() * 2 - 1) * bound;
    }
    g.initializers.set(k, { ...t, data });
    done.push(k);
  }
  return done;
}
