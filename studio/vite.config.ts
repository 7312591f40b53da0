/**
 * Builds the studio page (studio/index.html, its Web Worker and the core from src/ as TypeScript) into
 * dist/studio, which `shears studio` serves. The core's Node defaults (src/fs/default.ts, src/runtime/default.ts)
 * are swapped for their browser siblings, onnxruntime-web is its wasm-only build with the .wasm and .mjs
 * files emitted as the page's own assets (no CDN), and pngjs (Node streams and Buffer) is replaced by a small
 * PNG decoder over fflate (studio/png.ts).
 */
import { fileURLToPath } from 'node:url';
import { defineConfig, type Plugin } from 'vite';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

/** `./default.js` imported from src/fs or src/runtime -> `./default-browser.ts` (the package's "browser" field, for sources). */
function browserDefaults(): Plugin {
  return {
    name: 'shears-browser-defaults',
    enforce: 'pre',
    resolveId(source, importer) {
      if (!importer) return null;
      if (source !== "./default.js") return null;
      const m = /[\\/]src[\\/](fs|runtime)[\\/][^\\/]+\.ts$/.exec(importer);
      return m ? here(`../src/${m[1]}/default-browser.ts`) : null;
    },
  };
}

export default defineConfig({
  root: here('.'),
  base: './',
  logLevel: 'warn',
  plugins: [browserDefaults()],
  resolve: {
    alias: [
      { find: /^onnxruntime-web$/, replacement: here('../node_modules/onnxruntime-web/dist/ort.wasm.min.mjs') },
      { find: /^pngjs$/, replacement: here('./png.ts') },
    ],
  },
  // the worker is bundled by a build of its own: it needs the plugin too
  worker: { format: 'es', plugins: () => [browserDefaults()], rolldownOptions: { checks: { bundlerTimings: false, ineffectiveDynamicImport: false } } },
  build: {
    outDir: here('../dist/studio'),
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 4096,
    sourcemap: false,
    // the core's one dynamic import (train/bn.ts) and the build's own timings are not worth a warning here
    rolldownOptions: { checks: { bundlerTimings: false, ineffectiveDynamicImport: false } },
  },
});
