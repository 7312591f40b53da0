/**
 * A user-facing error: bad input, an unsupported model, a wrong argument. The CLI prints its message on one
 * line and exits with code 2; anything else that escapes is a bug and keeps its stack trace.
 */
export class ShearsError extends Error {
  /** The node the problem is about, where there is one. */
  readonly node: string | undefined;
  constructor(message: string, options: { node?: string; cause?: unknown } = {}) {
    super(options.node !== undefined ? `node '${options.node}': ${message}` : message, { cause: options.cause });
    this.name = 'ShearsError';
    this.node = options.node;
  }
}

export function fail(message: string, node?: string): never {
  throw new ShearsError(message, node === undefined ? {} : { node });
}
