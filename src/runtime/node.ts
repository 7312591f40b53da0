/** The onnxruntime-node adapter: the CLI's engine (native CPU kernels, threads, file paths). */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { Runtime } from './types.js';

export const nodeRuntime: Runtime = {
  name: 'onnxruntime-node',
  ort,
  version: () => ort.env.versions.node ?? ort.env.versions.common,
  opensPaths: true,
  sessionOptions: (o) => o,
  async optimizedModel(model, o) {
    // onnxruntime writes its optimised graph to a file: a temporary one, read back and removed
    const dir = mkdtempSync(join(tmpdir(), 'shears-fusion-'));
    const path = join(dir, 'optimized.onnx');
    try {
      const s = await ort.InferenceSession.create(model, { ...o, optimizedModelFilePath: path });
      await s.release();
      const bytes = readFileSync(path);
      return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
