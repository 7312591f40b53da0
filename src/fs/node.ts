/** The Node platform: node:fs (atomic writes: files.ts), node:path, node:os, worker threads, chart.js from node_modules. */
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { arch, availableParallelism, cpus, homedir, platform } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { writeFileAtomic } from './files.js';
import type { Platform } from './platform-types.js';

const assets = new Map<string, string>();

export const nodePlatform: Platform = {
  name: 'node',
  stat(path) {
    const st = statSync(path);
    return { isFile: st.isFile(), isDirectory: st.isDirectory(), size: st.size };
  },
  read(path, offset, length) {
    const out = new Uint8Array(length);
    let got = 0;
    const fd = openSync(path, 'r');
    try {
      while (got < length) {
        const n = readSync(fd, out, got, Math.min(length - got, 1 << 30), offset + got);
        if (n === 0) break;
        got += n;
      }
    } finally {
      closeSync(fd);
    }
    return got === length ? out : out.subarray(0, got);
  },
  async readFile(path) {
    const b = await readFile(path);
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  },
  list: (dir) => readdirSync(dir),
  join: (...parts) => join(...parts),
  dirname: (p) => dirname(p),
  basename: (p) => basename(p),
  machine() {
    const cpu = cpus();
    return { host: process.version, cpu: cpu[0]?.model ?? 'unknown', cores: cpu.length, platform: `${platform()} ${arch()}` };
  },
  availableParallelism: () => availableParallelism(),
  cpuTime() {
    const c = process.cpuUsage();
    return c.user + c.system;
  },
  writeFile: (path, data) => writeFileAtomic(path, data),
  mkdir: (path) => void mkdirSync(path, { recursive: true }),
  cacheDir() {
    const xdg = process.env['XDG_CACHE_HOME'];
    if (xdg) return xdg;
    const home = homedir();
    return home ? join(home, '.cache') : undefined;
  },
  startWorker: (url, data) => new Worker(url, { workerData: data }),
  asset(name) {
    let text = assets.get(name);
    if (text === undefined) {
      // chart.js's exports map hides dist/, so resolve from its entry
      const entry = createRequire(import.meta.url).resolve('chart.js');
      text = readFileSync(join(dirname(entry), name), 'utf8');
      assets.set(name, text);
    }
    return text;
  },
};
