/**
 * A user-facing error: bad input, an unsupported model, a wrong argument. The CLI prints its message on one
 * line and exits with code 2; anything else that escapes is a bug and keeps its stack trace.
 */
export class ShearsError extends Error {
  /** The node the problem is about, where there is one. */
  readonly node: string | undefined;
  constructor(message: string, options: { node?: string; cause?: unknown } = {}) {
    // One line, printable: names inside messages come from untrusted files.
    const text = options.node !== undefined ? `node '${options.node}': ${message}` : message;
    super(text.replace(/\s*[\r\n]+\s*/g, ' ').replace(/[\u0000-\u001f\u007f]/g, '?'), { cause: options.cause });
    this.name = 'ShearsError';
    this.node = options.node;
  }
}

export function fail(message: string, node?: string): never {
  throw new ShearsError(message, node === undefined ? {} : { node });
}
