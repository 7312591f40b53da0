/** The Platform interface (platform.ts says what it is for); apart so that the adapters import no setter. */

/** What `stat` tells of a path (links followed). */
export interface FileStat {
  isFile: boolean;
  isDirectory: boolean;
  size: number;
}

/** Facts about the machine, for the evidence of a report. */
export interface MachineInfo {
  /** The JavaScript host and its version ('v20.19.0' for Node, a browser's user agent otherwise). */
  host: string;
  cpu: string;
  cores: number;
  /** Operating system and architecture ('linux x64'). */
  platform: string;
}

/** A worker thread running a module (Node's Worker has this shape; a browser's would wrap a Web Worker). */
export interface WorkerThread {
  on(event: 'message', fn: (message: any) => void): unknown;
  on(event: 'error', fn: (e: Error) => void): unknown;
  on(event: 'exit', fn: (code: number) => void): unknown;
  once(event: 'exit', fn: () => void): unknown;
  postMessage(message: unknown): void;
  /** Whether the thread keeps the host alive (Node's event loop; a no-op elsewhere). */
  ref(): void;
  unref(): void;
}

export interface Platform {
  /** Its name ('node', 'browser', ...), for messages. */
  readonly name: string;
  /**
   * What `path` is (links followed). Throws when it cannot be looked at; the error's `code` (ENOENT, EACCES,
   * ...) is what messages quote when it has one.
   */
  stat(path: string): FileStat;
  /** Bytes [offset, offset + length) of a file (fewer when it ends first). Throws like `stat`. */
  read(path: string, offset: number, length: number): Uint8Array;
  /** All of a file, read without blocking (image folders read their images so). */
  readFile(path: string): Promise<Uint8Array>;
  /** The names in a folder (any order). Throws like `stat`. */
  list(dir: string): string[];
  join(...parts: string[]): string;
  dirname(path: string): string;
  basename(path: string): string;
  machine(): MachineInfo;
  /** The threads work may use by default (Node's os.availableParallelism, a browser's hardwareConcurrency). */
  availableParallelism(): number;
  /** CPU time this process has used so far, in microseconds (user + system), when the host can tell. */
  cpuTime?(): number;
  /** Writes a whole file atomically (a temporary file renamed over it); absent where files cannot be written. */
  writeFile?(path: string, data: Uint8Array): void;
  /** Creates a folder and its parents (no error when it exists); absent where files cannot be written. */
  mkdir?(path: string): void;
  /** The user's cache folder ($XDG_CACHE_HOME, else ~/.cache), where measurements are kept between runs; absent where there is none. */
  cacheDir?(): string | undefined;
  /** Starts a worker thread running the module at `url` with `data` (training replicas); absent where none can start. */
  startWorker?(url: URL, data: unknown): WorkerThread;
  /** The text of a named asset a report inlines: 'chart.umd.min.js' (chart.js's UMD build). */
  asset(name: 'chart.umd.min.js'): string;
}
