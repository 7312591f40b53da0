/** Fixtures of the studio's browser tests: the demo images as PNG files in class folders, a model with an unsupported op. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pngjs from 'pngjs';
import { readIdx } from '../src/data/idx.js';
import { GraphBuilder } from '../src/ir/builder.js';
import { floatTensor } from '../src/ir/tensor.js';
import { encodeModel } from '../src/onnx/codec.js';

export const DEMO_DIR = fileURLToPath(new URL('../../data/fashion-mnist-demo', import.meta.url));

/**
 * Writes the first `count` test images of the bundled Fashion-MNIST demo as 8-bit gray PNGs under
 * `dir/<label>/<index>.png` (labels as digits: the folder order is the class order). Returns the count per class.
 */
export function writeDemoPngs(dir: string, count: number): number[] {
  const images = readIdx(join(DEMO_DIR, 't10k-images-idx3-ubyte.gz'));
  const labels = readIdx(join(DEMO_DIR, 't10k-labels-idx1-ubyte.gz'));
  const [, h, w] = images.dims as [number, number, number];
  const perClass = new Array<number>(10).fill(0);
  for (let i = 0; i < count; i++) {
    const label = Number(labels.data[i]);
    const png = new pngjs.PNG({ width: w, height: h, colorType: 0 });
    for (let p = 0; p < w * h; p++) {
      const v = Number(images.data[i * w * h + p]);
      png.data[p * 4] = v; png.data[p * 4 + 1] = v; png.data[p * 4 + 2] = v; png.data[p * 4 + 3] = 255;
    }
    const cls = join(dir, String(label));
    mkdirSync(cls, { recursive: true });
    writeFileSync(join(cls, `${String(i).padStart(5, '0')}.png`), pngjs.PNG.sync.write(png, { colorType: 0 }));
    perClass[label]!++;
  }
  return perClass;
}

/** A small model with an op of a custom domain that shears has no rules for. */
export function unsupportedOpModel(): Uint8Array {
  const b = new GraphBuilder('custom');
  const x = b.input('x', [1, 4]);
  const y = b.node('MatMul', [x, b.init('w', floatTensor([4, 4], new Float32Array(16).fill(0.5)))]);
  const z = b.node('FancyActivation', [y], {}, { domain: 'com.example' });
  b.output(z, [1, 4]);
  return encodeModel(b.model(17, [{ domain: 'com.example', version: 1 }]));
}
