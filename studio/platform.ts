/**
 * The page's Platform (src/fs/platform.ts): files are the bytes of dropped/picked File objects, held in
 * memory under '/'-separated paths ('/data/<class>/<image>.png'). No file is written (no checkpoints) and no
 * worker thread is started (one onnxruntime-web session at a time, in this Web Worker).
 */
import type { Platform } from '../src/fs/platform.js';

const notFound = (p: string) => Object.assign(new Error(`ENOENT: no such file '${p}'`), { code: 'ENOENT' });

/** `assets`: the texts a report inlines ('chart.umd.min.js', bundled by the page). */
export function memoryPlatform(files: Map<string, Uint8Array>, assets: Record<string, string> = {}): Platform {
  const dirs = new Map<string, Set<string>>();
  for (const path of files.keys()) {
    const parts = path.split('/').filter(Boolean);
    for (let i = 0; i < parts.length; i++) {
      const dir = `/${parts.slice(0, i).join('/')}`;
      if (!dirs.has(dir)) dirs.set(dir, new Set());
      dirs.get(dir)!.add(parts[i]!);
    }
  }
  const norm = (p: string) => (`/${p.split('/').filter(Boolean).join('/')}`);
  const get = (p: string) => {
    const f = files.get(norm(p));
    if (!f) throw notFound(p);
    return f;
  };
  const ua = typeof navigator !== 'undefined' ? navigator.userAgent : 'browser';
  const cores = typeof navigator !== 'undefined' ? navigator.hardwareConcurrency || 1 : 1;
  return {
    name: 'browser',
    stat(p) {
      const n = norm(p);
      const f = files.get(n);
      if (f) return { isFile: true, isDirectory: false, size: f.length };
      if (dirs.has(n)) return { isFile: false, isDirectory: true, size: 0 };
      throw notFound(p);
    },
    read: (p, offset, length) => get(p).subarray(offset, offset + length),
    readFile: async (p) => get(p),
    list(dir) {
      const d = dirs.get(norm(dir));
      if (!d) throw notFound(dir);
      return [...d];
    },
    join: (...parts) => norm(parts.join('/')),
    dirname: (p) => norm(p.slice(0, Math.max(0, norm(p).lastIndexOf('/')))),
    basename: (p) => norm(p).slice(norm(p).lastIndexOf('/') + 1),
    machine: () => ({ host: ua, cpu: 'unknown (browser)', cores, platform: 'browser' }),
    availableParallelism: () => cores,
    asset: (name) => assets[name] ?? '',
  };
}
