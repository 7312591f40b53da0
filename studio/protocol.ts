/** Messages between the studio page (main.ts) and its worker (worker.ts). */
import type { InspectReport } from '../src/analysis/inspect.js';

export type ToWorker =
  /** `external`: files chosen with the model that hold its external data (by the file name its tensors give). */
  | { type: 'inspect'; name: string; bytes: ArrayBuffer; external: ExternalFile[]; threads: number }
  | {
      type: 'run';
      threads: number;
      /** The model's file name (for messages). */
      name: string;
      model: ArrayBuffer;
      external: ExternalFile[];
      /** The recipe as YAML (the text the page offers for download, so the run is what the file replays). */
      recipe: string;
      /** Data roles of the recipe: `{ calib: '/data', data: '/data' }`. */
      data: Record<string, string>;
      /** Dropped images: '/data/<class>/<file>' and their bytes. */
      files: { path: string; bytes: ArrayBuffer }[];
      latency: boolean;
    };

export interface ExternalFile {
  name: string;
  bytes: ArrayBuffer;
}

export interface InspectResult {
  name: string;
  fileBytes: number;
  report: InspectReport;
  groups: { id: number; width: number; prunable: number; frozen: number; nodes: string[] }[];
  frozen: { value: string; axis: number; reason: string; node?: string }[];
  groupsError?: string;
  ms: number;
}

export interface Sizes {
  macs: number;
  params: number;
  bytes: number;
}

export type FromWorker =
  | { type: 'inspected'; result: InspectResult }
  | { type: 'progress'; fraction: number; step: string; message: string; kind: string }
  | {
      type: 'done';
      model: ArrayBuffer;
      plan?: string;
      /** The report step's evidence as `shears report --html` writes it (with its plots). */
      reportHtml?: string;
      report: Record<string, unknown>;
      before: Sizes;
      after: Sizes;
      latency?: { before: number; after: number; runs: number; threads: number };
      ms: number;
      threads: number;
    }
  | { type: 'error'; message: string };
