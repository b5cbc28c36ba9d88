/**
 * Typed flags that can also be set from the environment, parsed by one
 * parser for both: `WEFTD_IP_MASQ=1` means what `--ip-masq=1` means, and
 * `WEFTD_HEALTHZ_PORT=abc` fails exactly as `--healthz-port abc` does, naming
 * the variable. flanneld does the same (flagutil.SetFlagsFromEnv: every flag
 * from PREFIX_FLAG, an empty value counts as unset, a bad one is an error).
 */
import { Option, type Command } from 'commander';
import { InvalidArgumentError } from '../core/errors.js';
import { parseDuration } from '../proxy/duration.js';

/**
 * A flag or environment value that does not parse. Exits 2 (a usage error,
 * as Go's flag package and flanneld exit); `field` is the flag or variable.
 */
export class UsageError extends InvalidArgumentError {
  readonly exitCode = 2;
}

/** Parses one value; `what` is the flag (`--healthz-port`) or variable (`WEFTD_HEALTHZ_PORT`) it came from. */
export type ValueParser<T> = (text: string, what: string) => T;

const GO_TRUE = new Set(['1', 't', 'T', 'TRUE', 'true', 'True']);
const GO_FALSE = new Set(['0', 'f', 'F', 'FALSE', 'false', 'False']);

/** Go's strconv.ParseBool: 1 t T TRUE true True / 0 f F FALSE false False. */
export const parseBool: ValueParser<boolean> = (text, what) => {
  if (GO_TRUE.has(text)) return true;
  if (GO_FALSE.has(text)) return false;
  throw new UsageError(what, `"${text}" is not a boolean (true, false, 1, 0, t, f)`);
};

/** A whole number in [min, max]. */
export function parseInteger(min: number, max: number = Number.MAX_SAFE_INTEGER): ValueParser<number> {
  return (text, what) => {
    const n = /^-?\d+$/.test(text.trim()) ? Number(text.trim()) : NaN;
    if (!Number.isSafeInteger(n)) throw new UsageError(what, `"${text}" is not a whole number`);
    if (n < min || n > max) throw new UsageError(what, `${n} is out of range (${min}..${max})`);
    return n;
  };
}

const portNumber = parseInteger(0, 65535);
/** A TCP/UDP port, 0..65535 (0 means "off" where the flag says so). */
export const parsePort: ValueParser<number> = (text, what) => {
  try {
    return portNumber(text, what);
  } catch {
    throw new UsageError(what, `"${text}" is not a port (0..65535)`);
  }
};

/** A Go-style duration ("1s", "500ms", "1m30s"), in ms. */
export const parseDurationMs: ValueParser<number> = (text, what) => {
  try {
    return parseDuration(text, what);
  } catch (err) {
    throw new UsageError(what, (err as InvalidArgumentError).message.slice(what.length + 2));
  }
};

/** One of a fixed set of words. */
export function parseChoice<T extends string>(choices: readonly T[]): ValueParser<T> {
  return (text, what) => {
    if ((choices as readonly string[]).includes(text)) return text as T;
    throw new UsageError(what, `"${text}" is not one of ${choices.join(', ')}`);
  };
}

export const parseString: ValueParser<string> = (text) => text;

/** A comma-separated list (empty entries dropped). */
export const parseList: ValueParser<string[]> = (text) =>
  text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

export interface TypedOption<T> {
  /** Commander flags: `--healthz-port <port>`; a boolean is `--ip-masq`. */
  flags: string;
  description: string;
  /** Default parseString (booleans parseBool, lists parseList); a list's parser returns the items of one value. */
  parse?: ValueParser<T>;
  /** `boolean`: a bare `--flag` is true, `--flag=false` etc. are parsed. `list`: repeatable, comma-separated values append. */
  kind?: 'value' | 'boolean' | 'list';
  default?: T;
  /** Shown in --help instead of the default value. */
  defaultDescription?: string;
  /** false: never read from the environment (e.g. --cleanup). Default true. */
  env?: boolean;
}

interface EnvBinding {
  option: Option;
  parse: ValueParser<unknown>;
  kind: 'value' | 'boolean' | 'list';
}

const bindings = new WeakMap<Command, EnvBinding[]>();

/** `--healthz-port` -> `HEALTHZ_PORT`. */
export function envSuffix(option: Option): string {
  return option.long!.replace(/^--/, '').replace(/-/g, '_').toUpperCase();
}

/**
 * Adds a typed option to `cmd`. The same parser reads the flag and (once
 * `useEnv` is installed) the environment variable.
 */
export function addTypedOption<T>(cmd: Command, o: TypedOption<T>): Command {
  const kind = o.kind ?? 'value';
  const parse = (o.parse ?? (kind === 'boolean' ? parseBool : kind === 'list' ? parseList : parseString)) as ValueParser<unknown>;
  // A boolean takes an optional value so `--ip-masq=false` works; bare `--ip-masq` is true.
  const flags = kind === 'boolean' && !/[<[]/.test(o.flags) ? `${o.flags} [bool]` : o.flags;
  const option = new Option(flags, o.description);
  const long = option.long!;
  if (kind === 'list') {
    option.argParser((v: string, prev: unknown) => [...(Array.isArray(prev) ? prev : []), ...(parse(v, long) as unknown[])]);
  } else {
    option.argParser((v: string) => parse(v, long));
  }
  if (o.default !== undefined) option.default(o.default, o.defaultDescription);
  else if (kind === 'boolean') option.default(false);
  else if (kind === 'list') option.default([]);
  cmd.addOption(option);
  if (o.env !== false) {
    const list = bindings.get(cmd) ?? [];
    list.push({ option, parse, kind });
    bindings.set(cmd, list);
  }
  return cmd;
}

/**
 * Values for `cmd`'s typed options from `<prefix>_<FLAG>` where the command
 * line did not give the flag. Throws UsageError naming the variable.
 */
export function applyEnv(cmd: Command, prefix: string, env: NodeJS.ProcessEnv = process.env): void {
  for (const b of bindings.get(cmd) ?? []) {
    const name = b.option.attributeName();
    // 'env': an earlier prefix set it (useEnv's first prefix wins: WEFTD_ over FLANNELD_).
    const source = cmd.getOptionValueSource(name);
    if (source === 'cli' || source === 'env') continue;
    const variable = `${prefix}_${envSuffix(b.option)}`;
    const text = env[variable];
    // Empty = unset (flanneld's rule); a string option keeps "" (weft-proxy's "--etcd-endpoints ''" = none).
    if (text === undefined || (text === '' && b.parse !== parseString)) continue;
    cmd.setOptionValueWithSource(name, b.parse(text, variable), 'env');
  }
}

/**
 * Reads `<prefix>_<FLAG>` for the typed options of the command about to run
 * and of its parents (weftctl's root holds --etcd-endpoints), before its action.
 */
export function useEnv(program: Command, prefix: string | readonly string[], env: NodeJS.ProcessEnv = process.env): Command {
  const prefixes = typeof prefix === 'string' ? [prefix] : prefix;
  program.hook('preAction', (_root, action) => {
    for (let c: Command | null = action; c; c = c.parent) for (const p of prefixes) applyEnv(c, p, env);
  });
  return program;
}

/**
 * Rewrites a Go `flag` package command line (flanneld's) into the form
 * commander parses: `-flag=v` / `-flag v` become `--flag=v` / `--flag v`
 * (Go accepts one or two dashes alike), and a boolean without `=` becomes
 * `--flag=true`, because in Go a boolean never takes the next word as its
 * value (`--ip-masq false` leaves `false` as a positional argument, which
 * weftd rejects as a usage error instead of silently stopping there as Go
 * does). `-h` stays commander's help; everything after `--` is untouched.
 */
export function goFlagArgv(args: readonly string[], booleans: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      out.push(...args.slice(i));
      break;
    }
    const m = /^--?([A-Za-z][\w.-]*)(=.*)?$/.exec(a);
    if (!m || a === '-h') {
      out.push(a);
      continue;
    }
    const [, name, value] = m;
    out.push(`--${name}${value ?? (booleans.has(name!) ? '=true' : '')}`);
  }
  return out;
}

/** The long names (without dashes) of `cmd`'s boolean typed options. */
export function booleanFlagsOf(cmd: Command): Set<string> {
  return new Set(cmd.options.filter((o) => o.flags.endsWith('[bool]')).map((o) => o.long!.replace(/^--/, '')));
}
