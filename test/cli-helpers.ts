/** Runs the built CLI as a user would (a separate process) and captures what it prints. */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
export const FIXTURE_MODEL = fileURLToPath(new URL('../../test/fixtures/models/fmnist_resnet20.onnx', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function shears(args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): CliResult {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: opts.timeoutMs ?? 120_000, ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}) });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Asserts the CLI failed as a user error: exit 2 and exactly one line on stderr, no stack trace. */
export function isUserError(r: CliResult): boolean {
  const lines = r.stderr.trim().split('\n');
  return r.code === 2 && lines.length === 1 && lines[0]!.startsWith('shears: error: ') && !/\n\s+at /.test(r.stderr);
}
