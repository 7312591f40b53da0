/**
 * Command-line flags generated from the pipeline's option tables (pipeline/steps.ts): registering them with their
 * help (which steps use a flag, each step's default), reading a step's options from the flags given, and naming
 * option keys as flags in messages.
 */
import type { Command } from 'commander';
import { ShearsError } from '../errors.js';
import { defaultOf, parseOption, type OptionDef } from '../pipeline/options.js';
import {
  FINETUNE_OPTIONS, NM_OPTIONS, QUANTIZE_OPTIONS, REPAIR_OPTIONS, STRUCTURED_OPTIONS, UNSTRUCTURED_OPTIONS,
  type PruneMode, type StepKind,
} from '../pipeline/steps.js';
import { LATENCY_BATCH, TARGET_FLAGS } from '../pipeline/target.js';

/** Where options apply: a step (of a prune mode), how it is labelled in help and which flag turns it on. */
export interface StepContext {
  step: StepKind;
  mode?: PruneMode;
  label: string;
  /** The flags that add this step (or choose this prune mode), the one to name first. */
  enable: readonly string[];
  defs: readonly OptionDef[];
}

export const CONTEXTS: readonly StepContext[] = [
  { step: 'prune', mode: 'unstructured', label: 'unstructured', enable: ['--sparsity'], defs: UNSTRUCTURED_OPTIONS },
  { step: 'prune', mode: 'nm', label: 'N:M', enable: ['--pattern'], defs: NM_OPTIONS },
  { step: 'prune', mode: 'structured', label: 'structured', enable: ['--structured'], defs: STRUCTURED_OPTIONS },
  { step: 'repair', label: 'repair', enable: ['--repair', '--data'], defs: REPAIR_OPTIONS },
  { step: 'finetune', label: 'finetune', enable: ['--finetune-epochs'], defs: FINETUNE_OPTIONS },
  { step: 'quantize', label: 'quantize', enable: ['--quantize'], defs: QUANTIZE_OPTIONS },
];

/** The long flag of a spelling: '--calib-size <n>' -> '--calib-size'. */
export const longFlag = (spelling: string) => spelling.split(' ')[0]!;

interface Use {
  ctx: StepContext;
  def: OptionDef;
  help: string;
}

function defaultText(def: OptionDef): string {
  if (def.defaultHelp !== undefined) return ` (default: ${def.defaultHelp})`;
  if (def.presence !== 'default' || def.switches || typeof def.default === 'boolean') return '';
  return ` (default ${String(def.default)})`;
}

/** Every flag the step contexts define, with the uses that share it. */
function flagUses(contexts: readonly StepContext[] = CONTEXTS): Map<string, { spelling: string; uses: Use[] }> {
  const flags = new Map<string, { spelling: string; uses: Use[] }>();
  const add = (spelling: string, use: Use) => {
    const f = flags.get(longFlag(spelling)) ?? { spelling, uses: [] };
    f.uses.push(use);
    flags.set(longFlag(spelling), f);
  };
  for (const ctx of contexts) {
    for (const def of ctx.defs) {
      if (def.flag) add(def.flag, { ctx, def, help: `${def.help}${defaultText(def)}` });
      for (const [flag, sw] of Object.entries(def.switches ?? {})) add(flag, { ctx, def, help: sw.help });
    }
  }
  return flags;
}

/** Help: the uses grouped by text, each group labelled by its steps unless the flag turns its one step on. */
function helpOf(flag: string, uses: Use[]): string {
  const groups = new Map<string, string[]>();
  for (const u of uses) {
    const labels = groups.get(u.help) ?? [];
    if (!labels.includes(u.ctx.label)) labels.push(u.ctx.label);
    groups.set(u.help, labels);
  }
  if (groups.size === 1 && uses.every((u) => u.ctx.enable.includes(flag))) return uses[0]!.help;
  return [...groups].map(([help, labels]) => `[${labels.join(', ')}] ${help}`).join('; ');
}

/** Adds the flags of every step to `cmd` (after the command's own), target flags included. */
export function registerStepFlags(cmd: Command): void {
  for (const [flag, { spelling, uses }] of flagUses()) {
    if (cmd.options.some((o) => o.long === flag)) continue;
    if (uses[0]!.ctx.mode === 'structured' && !cmd.options.some((o) => o.long === '--structured')) {
      cmd.option('--structured', 'remove whole channels (structured pruning) instead of masking weights');
      for (const t of TARGET_FLAGS) cmd.option(t.flag, `[structured] ${t.help}`);
      cmd.option(LATENCY_BATCH.flag, `[structured] ${LATENCY_BATCH.help}`);
    }
    cmd.option(spelling, helpOf(flag, uses));
  }
}

/**
 * Adds the flags of some step contexts only (no target flags), after the command's own: a command that builds
 * fixed steps from them (shears sweep). Returns the long flags added or shared with the command.
 */
export function registerContextFlags(cmd: Command, contexts: readonly StepContext[]): string[] {
  const all: string[] = [];
  for (const [flag, { spelling, uses }] of flagUses(contexts)) {
    all.push(flag);
    if (cmd.options.some((o) => o.long === flag)) continue;
    cmd.option(spelling, helpOf(flag, uses));
  }
  return all;
}

/** The flags the user gave and what commander parsed for them. */
export class GivenFlags {
  private readonly used = new Set<string>();
  constructor(private readonly cmd: Command) {}

  private option(flag: string) {
    return this.cmd.options.find((o) => o.long === flag);
  }

  has(flag: string): boolean {
    const o = this.option(flag);
    if (o === undefined || this.cmd.getOptionValueSource(o.attributeName()) !== 'cli') return false;
    // --reduce-range and --no-reduce-range share one value: the one given last is the one given.
    const v = this.cmd.getOptionValue(o.attributeName()) as unknown;
    return o.negate ? v === false : !(o.isBoolean() && v === false);
  }

  /** The value of a given flag (marks it used). */
  take(flag: string): string | boolean | string[] {
    this.used.add(flag);
    return this.cmd.getOptionValue(this.option(flag)!.attributeName()) as string | boolean | string[];
  }

  /** Marks a flag as used without reading it. */
  use(flag: string): void {
    this.used.add(flag);
  }

  /** The flags given that no step took. */
  unused(among: Iterable<string>): string[] {
    return [...among].filter((f) => this.has(f) && !this.used.has(f));
  }
}

/** A step's options from the flags given (values checked; each flag names itself in errors). */
export function optionsFromFlags(flags: GivenFlags, ctx: StepContext, into: Record<string, unknown> = {}): Record<string, unknown> {
  for (const def of ctx.defs) {
    if (def.onlyWith && !def.onlyWith.values.includes(into[def.onlyWith.key] ?? defaultOf(ctx.defs, def.onlyWith.key))) continue;
    if (def.flag && flags.has(longFlag(def.flag))) into[def.key] = parseOption(longFlag(def.flag), def.type, flags.take(longFlag(def.flag)), 'cli');
    const switches = Object.entries(def.switches ?? {}).filter(([f]) => flags.has(f));
    if (switches.length > 1) throw new ShearsError(`choose one of ${Object.keys(def.switches!).join(', ')}`);
    if (switches.length === 1) {
      flags.take(switches[0]![0]);
      into[def.key] = switches[0]![1].value;
    }
  }
  return into;
}

/** Fails on a given step flag that no step of this run takes, naming what it needs. */
export function checkAllUsed(flags: GivenFlags): void {
  const uses = flagUses();
  const all = [...uses.keys(), ...TARGET_FLAGS.map((t) => longFlag(t.flag)), longFlag(LATENCY_BATCH.flag)];
  const [flag] = flags.unused(all);
  if (flag === undefined) return;
  if (flag === longFlag(LATENCY_BATCH.flag)) throw new ShearsError(`${flag} applies to --target-latency only`);
  if (!uses.has(flag)) throw new ShearsError(`${flag} needs --structured`);
  const onlyWith = (u: Use) => {
    const w = u.def.onlyWith!;
    // the value is that of the enabling flag (--quantize int8), or of another option (--sparsity with --method wanda)
    const by = u.ctx.defs.find((d) => d.key === w.key);
    const own = by?.flag !== undefined && u.ctx.enable.includes(longFlag(by.flag));
    return own || !by?.flag ? `${u.ctx.enable[0]} ${w.values.join('|')}` : `${u.ctx.enable[0]} with ${longFlag(by.flag)} ${w.values.join('|')}`;
  };
  const needs = [...new Set(uses.get(flag)!.uses.map((u) => (u.def.onlyWith ? onlyWith(u) : u.ctx.enable[0]!)))];
  // the same option of another step under its own flag (--threads: the fine-tuning's is --finetune-threads)
  const key = uses.get(flag)!.uses[0]!.def.key;
  const others = [...new Set(CONTEXTS.flatMap((c) => c.defs.filter((d) => d.key === key && d.flag && longFlag(d.flag) !== flag).map((d) => `${longFlag(d.flag!)} (${c.step})`)))];
  throw new ShearsError(`${flag} needs ${needs.join(' or ')}${others.length ? `; the same option of another step: ${others.join(', ')}` : ''}`);
}

/** An option key as the flag that sets it in `contexts` (undefined: none does). */
function flagIn(contexts: readonly StepContext[], key: string): string | undefined {
  const [step, name] = key.split('.') as [string, string | undefined];
  if (step === 'preprocess' && name) return `--${name}`;
  for (const ctx of contexts) {
    if (ctx.step !== step) continue;
    const def = ctx.defs.find((d) => d.key === name);
    if (def?.flag) return longFlag(def.flag);
    if (def?.switches) return Object.keys(def.switches).join('/');
  }
  return undefined;
}

/** Option keys (`repair.calibSize`, `preprocess.scale`) as the flags that set them. */
export function flagOfKey(key: string): string {
  if (key === 'prune.target') return 'a target (--ratio, --target-macs, --target-params, --target-latency or --plan)';
  return flagIn(CONTEXTS, key) ?? key;
}

// ------------------------------------------------------------------ a step's own command (shears quantize, ...)

/** A step's options as its own command spells them (OptionDef.own: `shears quantize --mode`, not `--quantize`). */
export function ownContext(step: StepKind, defs: readonly OptionDef[]): StepContext {
  const respelled: OptionDef[] = [];
  for (const d of defs) {
    if (d.own === 'none') continue;
    const { flag = d.flag, switches = d.switches, help = d.help } = d.own ?? {};
    respelled.push({ key: d.key, type: d.type, presence: d.presence, help, ...(flag ? { flag } : {}), ...(switches ? { switches } : {}), ...pick(d) });
  }
  return { step, label: step, enable: [], defs: respelled };
}

function pick(d: OptionDef): Partial<OptionDef> {
  const defaultHelp = d.own !== undefined && d.own !== 'none' && 'defaultHelp' in d.own ? d.own.defaultHelp : d.defaultHelp;
  return { ...(d.presence === 'default' ? { default: d.default } : {}), ...(d.onlyWith ? { onlyWith: d.onlyWith } : {}), ...(defaultHelp !== undefined ? { defaultHelp } : {}) };
}

/** Adds the flags of an own-command context to `cmd`, with their defaults in the help. */
export function registerOwnFlags(cmd: Command, ctx: StepContext): void {
  for (const def of ctx.defs) {
    if (def.flag) cmd.option(def.flag, `${def.help}${defaultText(def)}`);
    for (const [flag, sw] of Object.entries(def.switches ?? {})) cmd.option(flag, sw.help);
  }
}

/** Option keys as the flags of the own commands' contexts (then as `shears prune` spells them). */
export function ownFlagOfKey(contexts: readonly StepContext[]): (key: string) => string {
  return (key) => flagIn(contexts, key) ?? flagOfKey(key);
}

/**
 * Fails on a flag given to an own command that no step took: one that applies to other values of an option
 * (`--block-size applies to --mode int4 only`), or one of a step the command did not add (`--limit needs --data`).
 */
export function checkOwnUsed(flags: GivenFlags, contexts: readonly StepContext[]): void {
  const name = ownFlagOfKey(contexts);
  for (const ctx of contexts) {
    for (const def of ctx.defs) {
      const [flag] = flags.unused([...(def.flag ? [longFlag(def.flag)] : []), ...Object.keys(def.switches ?? {})]);
      if (flag === undefined) continue;
      if (def.onlyWith) throw new ShearsError(`${flag} applies to ${name(`${ctx.step}.${def.onlyWith.key}`)} ${def.onlyWith.values.join(' or ')} only`);
      const required = ctx.defs.find((d) => d.presence === 'required' && d.flag);
      throw new ShearsError(`${flag} needs ${required ? longFlag(required.flag!) : name(ctx.step)}`);
    }
  }
}
