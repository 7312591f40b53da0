/**
 * The declarative option schema: what a step option is (key, value type, default, help) and how the command line
 * spells it (a flag taking a value, a switch, or switches that each set a value). Recipe validation, the option
 * types of the steps and the `shears prune` flags are all generated from these tables (steps.ts), so a default or
 * a help text exists once.
 */
import { ShearsError } from '../errors.js';

/**
 * A bad option value or combination. `key` names the option as `step.key` (e.g. `repair.calibSize`); `problem`
 * follows that name ("must be ...") and may name other options as `{step.key}`. The message names options by
 * key; the CLI names them by flag instead (see `describeOptionError`).
 */
export class OptionError extends ShearsError {
  constructor(readonly key: string, readonly problem: string) {
    super(`${key} ${problem.replace(/\{([\w.]+)\}/g, '$1')}`);
    this.name = 'OptionError';
  }
}

/** The message of an OptionError with option keys written by `name` (e.g. as command-line flags). */
export function describeOptionError(e: OptionError, name: (key: string) => string): string {
  return `${name(e.key)} ${e.problem.replace(/\{([\w.]+)\}/g, (_, k: string) => name(k))}`;
}

/** A value type: how a recipe value and a command-line string become a typed value. */
export interface OptionType<T> {
  /** What a value must be, for errors ('a number in [0, 1)'). */
  readonly describe: string;
  /** From a recipe (a JSON or YAML value); returns undefined when the value does not fit. */
  fromJson(v: unknown): T | undefined;
  /** From the command line (commander's string, list of strings, or true for a switch). */
  fromCli(v: string | boolean | string[]): T | undefined;
  /** For an object value checked field by field: from a recipe, throwing an OptionError naming the field. */
  check?(v: unknown, key: string): T;
}

/** A type for an object value checked by `check` (a union such as the structured target); no command-line form. */
export function objectType<T>(describe: string, check: (v: unknown, key: string) => T): OptionType<T> {
  return { describe, fromJson: () => undefined, fromCli: () => undefined, check };
}

export type Presence = 'optional' | 'default' | 'required';

export interface OptionDef<K extends string = string, T = unknown, P extends Presence = Presence> {
  readonly key: K;
  readonly type: OptionType<T>;
  readonly presence: P;
  readonly default?: T;
  readonly help: string;
  /** The flag taking a value (`--calib-size <n>`), or a switch (`--finetune-kd`); absent: recipe only. */
  readonly flag?: string;
  /** Switches that set a value each (`--per-layer` sets scope 'layer'; `--no-masks` sets masks false). */
  readonly switches?: Readonly<Record<string, Switch<T>>>;
  /** The option applies only when another option of the step has one of these values (quantize: calib with mode int8). */
  readonly onlyWith?: { readonly key: string; readonly values: readonly unknown[] };
  /** The help of the default in `--help` when it is not the value itself (e.g. 'by the model'). */
  readonly defaultHelp?: string;
  /**
   * How the step's own command (`shears quantize`, `shears finetune`) spells the option where that differs from
   * `flag`/`switches`/`help` (`--mode` there, `--quantize` in `shears prune`); 'none': not in the own command.
   */
  readonly own?: OwnSpelling<T> | 'none';
}

/** The spelling of an option in its step's own command (fields not given: as in `shears prune`). */
export interface OwnSpelling<T> {
  readonly flag?: string;
  readonly switches?: Readonly<Record<string, Switch<T>>>;
  readonly help?: string;
  /** Given (even as undefined): replaces `defaultHelp`. */
  readonly defaultHelp?: string | undefined;
}

/** A command-line switch setting an option to `value`. */
export interface Switch<T> {
  readonly value: T;
  readonly help: string;
}

type Extra<T> = {
  help: string;
  flag?: string;
  switches?: Readonly<Record<string, Switch<NoInfer<T>>>>;
  defaultHelp?: string;
  onlyWith?: { readonly key: string; readonly values: readonly unknown[] };
  own?: OwnSpelling<NoInfer<T>> | 'none';
};

/** An option without a default. */
export function opt<K extends string, T>(key: K, type: OptionType<T>, extra: Extra<T>): OptionDef<K, T, 'optional'> {
  return { key, type, presence: 'optional', ...extra };
}

/** An option with a default (applied by the step). */
export function dflt<K extends string, T>(key: K, type: OptionType<T>, value: NoInfer<T>, extra: Extra<T>): OptionDef<K, T, 'default'> {
  return { key, type, presence: 'default', default: value, ...extra };
}

/** An option every step of its kind must give. */
export function req<K extends string, T>(key: K, type: OptionType<T>, extra: Extra<T>): OptionDef<K, T, 'required'> {
  return { key, type, presence: 'required', ...extra };
}

type ValueOf<D> = D extends OptionDef<string, infer T, Presence> ? T : never;
type Defs = readonly OptionDef<string, never, Presence>[] | readonly OptionDef[];

/** The options a step gives (a recipe step, as written). */
export type Given<D extends Defs> =
  & { -readonly [X in D[number] as X['presence'] extends 'required' ? X['key'] : never]: ValueOf<X> }
  & { -readonly [X in D[number] as X['presence'] extends 'required' ? never : X['key']]?: ValueOf<X> };

/** The options a step runs with: defaults filled in. */
export type Resolved<D extends Defs> =
  & { -readonly [X in D[number] as X['presence'] extends 'optional' ? never : X['key']]: ValueOf<X> }
  & { -readonly [X in D[number] as X['presence'] extends 'optional' ? X['key'] : never]?: ValueOf<X> };

/** The default of option `key` among `defs` (undefined: none). */
export function defaultOf(defs: readonly OptionDef[], key: string): unknown {
  return defs.find((d) => d.key === key)?.default;
}

/** Fills in the defaults of `defs` (a shallow copy of `given`). */
export function withDefaults<D extends Defs>(defs: D, given: Given<D>): Resolved<D> {
  const out: Record<string, unknown> = { ...(given as Record<string, unknown>) };
  for (const d of defs as readonly OptionDef[]) if (out[d.key] === undefined && d.presence === 'default') out[d.key] = d.default;
  return out as Resolved<D>;
}

// ------------------------------------------------------------------------------------------------ value types

const fromString = (v: string | boolean | string[]): string | undefined => (typeof v === 'string' ? v : undefined);

export function numberType(o: { min?: number; max?: number; minExclusive?: boolean; maxExclusive?: boolean; integer?: boolean } = {}): OptionType<number> {
  const range = o.min !== undefined && o.max !== undefined
    ? ` in ${o.minExclusive ? '(' : '['}${o.min}, ${o.max}${o.maxExclusive ? ')' : ']'}`
    : o.min !== undefined ? (o.minExclusive ? ` above ${o.min}` : o.min === 0 && o.integer ? '' : ` of at least ${o.min}`) : '';
  const what = o.integer ? (o.min === 1 && o.max === undefined ? 'a positive integer' : o.min === 0 && o.max === undefined && !o.minExclusive ? 'a non-negative integer' : `an integer${range}`) : `a number${range}`;
  const check = (n: number): number | undefined => {
    if (!Number.isFinite(n) || (o.integer && !Number.isInteger(n))) return undefined;
    if (o.min !== undefined && (o.minExclusive ? n <= o.min : n < o.min)) return undefined;
    if (o.max !== undefined && (o.maxExclusive ? n >= o.max : n > o.max)) return undefined;
    return n;
  };
  return {
    describe: what,
    fromJson: (v) => (typeof v === 'number' ? check(v) : undefined),
    fromCli: (v) => (typeof v === 'string' && v.trim() !== '' ? check(Number(v)) : undefined),
  };
}

export function oneOf<T extends string>(values: readonly T[]): OptionType<T> {
  const pick = (v: unknown) => (typeof v === 'string' && (values as readonly string[]).includes(v) ? (v as T) : undefined);
  return { describe: `one of ${values.join(', ')}`, fromJson: pick, fromCli: pick };
}

export const booleanType: OptionType<boolean> = {
  describe: 'true or false',
  fromJson: (v) => (typeof v === 'boolean' ? v : undefined),
  fromCli: (v) => (typeof v === 'boolean' ? v : undefined),
};

export const stringType: OptionType<string> = {
  describe: 'a string',
  fromJson: (v) => (typeof v === 'string' && v !== '' ? v : undefined),
  fromCli: fromString,
};

/** A data set: a spec string (`idx:DIR@train`, ...) or a role (`$calib`) bound when the recipe runs. */
export const dataType: OptionType<string> = {
  describe: 'a data set spec (e.g. idx:DIR@train) or a role such as $calib',
  fromJson: (v) => (typeof v === 'string' && v.trim() !== '' && (!v.startsWith('$') || /^\$[A-Za-z_][\w-]*$/.test(v)) ? v : undefined),
  fromCli: fromString,
};

/** A regular expression, kept as its source text (plain JSON). */
export const regexType: OptionType<string> = {
  describe: 'a regular expression',
  fromJson: (v) => (typeof v === 'string' && validRegex(v) ? v : undefined),
  fromCli: (v) => (typeof v === 'string' && validRegex(v) ? v : undefined),
};

function validRegex(s: string): boolean {
  try {
    new RegExp(s);
    return true;
  } catch {
    return false;
  }
}

/** A list of strings: a JSON array, or a repeatable flag. */
export const stringListType: OptionType<string[]> = {
  describe: 'a list of strings',
  fromJson: (v) => (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string') ? [...(v as string[])] : undefined),
  fromCli: (v) => (Array.isArray(v) ? [...v] : typeof v === 'string' ? [v] : undefined),
};

/** A list of values from a fixed set: a JSON array, or a comma list on the command line ('stats,lsq'). */
export function listOf<T extends string>(values: readonly T[]): OptionType<T[]> {
  const ok = (a: unknown[]): T[] | undefined => (a.length > 0 && a.every((x) => typeof x === 'string' && (values as readonly string[]).includes(x)) ? (a as T[]) : undefined);
  return {
    describe: `a list of ${values.join(', ')}`,
    fromJson: (v) => (Array.isArray(v) ? ok([...v]) : undefined),
    fromCli: (v) => (typeof v === 'string' ? ok(v.split(',').map((s) => s.trim().toLowerCase())) : undefined),
  };
}

/** Fractions by name: a JSON object, or repeatable NAME=S flags. */
export function fractionsByName(range: OptionType<number>): OptionType<Record<string, number>> {
  return {
    describe: `an object of names to ${range.describe}`,
    fromJson: (v) => {
      if (typeof v !== 'object' || v === null || Array.isArray(v) || Object.keys(v).length === 0) return undefined;
      const out: Record<string, number> = {};
      for (const [k, x] of Object.entries(v)) {
        const n = range.fromJson(x);
        if (n === undefined) return undefined;
        out[k] = n;
      }
      return out;
    },
    fromCli: (v) => {
      const out: Record<string, number> = {};
      for (const spec of Array.isArray(v) ? v : typeof v === 'string' ? [v] : []) {
        const eq = spec.lastIndexOf('=');
        const n = eq > 0 ? range.fromCli(spec.slice(eq + 1)) : undefined;
        if (n === undefined) return undefined;
        out[spec.slice(0, eq)] = n;
      }
      return Object.keys(out).length ? out : undefined;
    },
  };
}

/** A value of `type`, or an OptionError naming `key` and what the value must be. */
export function parseOption<T>(key: string, type: OptionType<T>, v: unknown, from: 'json' | 'cli'): T {
  if (from === 'json' && type.check) return type.check(v, key);
  const out = from === 'json' ? type.fromJson(v) : type.fromCli(v as string | boolean | string[]);
  if (out === undefined) {
    const shown = typeof v === 'string' ? `'${v}'` : JSON.stringify(v) ?? String(v);
    throw new OptionError(key, `must be ${type.describe}, not ${shown}`);
  }
  return out;
}
