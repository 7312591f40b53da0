/**
 * `shears studio [--port N]`: serves the studio page (studio/, built by Vite into dist/studio) on 127.0.0.1
 * with node:http, with the headers that make the page cross-origin isolated (COOP/COEP), which onnxruntime-web
 * needs for its wasm threads (SharedArrayBuffer). The page does all the work in the browser; this server only
 * sends its static files.
 */
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { ShearsError } from '../errors.js';
import { parseNumber } from './args.js';

/** Where the built page is: dist/studio, beside dist/src (this file is dist/src/cli/studio.js). */
export const STUDIO_ROOT = fileURLToPath(new URL('../../studio/', import.meta.url));

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
};

/** The headers of every response: cross-origin isolation (wasm threads) and nothing cached across builds. */
export const STUDIO_HEADERS: Record<string, string> = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'X-Content-Type-Options': 'nosniff',
  'Cache-Control': 'no-cache',
};

export interface StudioServer {
  server: Server;
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Starts the static server of the built page on 127.0.0.1:`port` (0: any free port). */
export async function startStudio(port: number, root = STUDIO_ROOT): Promise<StudioServer> {
  if (!existsSync(join(root, 'index.html'))) {
    throw new ShearsError(`the studio page is not built (no ${join(root, 'index.html')}): run \`npm run build\` in the shears checkout`);
  }
  const server = createServer((req, res) => {
    const send = (status: number, text: string) => {
      res.writeHead(status, { ...STUDIO_HEADERS, 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(text);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed');
    let path: string;
    try {
      path = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
    } catch {
      return send(400, 'bad request');
    }
    if (path.endsWith('/')) path += 'index.html';
    const file = normalize(join(root, path));
    if (!file.startsWith(normalize(root.endsWith(sep) ? root : root + sep))) return send(403, 'forbidden');
    let size: number;
    try {
      const st = statSync(file);
      if (!st.isFile()) return send(404, 'not found');
      size = st.size;
    } catch {
      return send(404, 'not found');
    }
    res.writeHead(200, { ...STUDIO_HEADERS, 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', 'Content-Length': String(size) });
    if (req.method === 'HEAD') return res.end();
    createReadStream(file).pipe(res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      reject(e.code === 'EADDRINUSE' ? new ShearsError(`port ${port} is in use: give another with --port N`) : e.code === 'EACCES' ? new ShearsError(`port ${port} cannot be opened (permission denied): give one above 1023 with --port N`) : e);
    });
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const actual = (server.address() as { port: number }).port;
  return {
    server,
    port: actual,
    url: `http://127.0.0.1:${actual}/`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export function registerStudio(program: Command): void {
  program
    .command('studio')
    .description('serve the studio page: inspect and prune a model in the browser (onnxruntime-web); prints its URL')
    .option('--port <n>', 'port on 127.0.0.1 (0: any free port)', '4917')
    .action(async (o: { port: string }) => {
      const port = parseNumber(o.port, '--port', { min: 0, max: 65535, integer: true });
      const s = await startStudio(port);
      process.stdout.write(`shears studio: ${s.url}  (serving ${STUDIO_ROOT}; Ctrl-C stops)\n`);
      await new Promise<void>((resolve) => s.server.once('close', () => resolve()));
    });
}
