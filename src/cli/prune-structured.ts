/**
 * HOOK for structured (channel-removing) pruning under `shears prune --structured`. Owned by the structured
 * pruning work: it registers its own options on the prune command and takes over the whole run when
 * `--structured` is given. This placeholder only reserves the flag.
 */
import type { Command } from 'commander';
import { ShearsError } from '../errors.js';

/** Adds the structured-pruning options to the `prune` command. */
export function registerStructuredOptions(cmd: Command): void {
  cmd.option('--structured', 'remove whole channels (structured pruning) instead of masking weights');
}

/** Runs `shears prune MODEL --structured ...` with commander's parsed options for the prune command. */
export async function runStructured(_modelPath: string, _options: Record<string, unknown>): Promise<void> {
  throw new ShearsError('structured pruning is not available yet');
}
