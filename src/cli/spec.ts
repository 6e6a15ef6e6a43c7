import { parseArgs, type ParseArgsConfig } from 'node:util';

export type Flags = Record<string, string | boolean | undefined>;

export interface FlagSpec {
  type: 'string' | 'boolean';
  help: string;
  /** Shown after the flag name in help, e.g. DIR. */
  value?: string;
  /** The only values allowed (matched case-insensitively, passed on in this spelling). */
  choices?: readonly string[];
  /** Checks a value: returns what is wrong with it (after "--name must be"), or null. */
  check?: (value: string) => string | null;
}

/** One runnable command: its help text is generated from these fields. */
export interface CommandSpec {
  summary: string;
  /** Positional arguments, e.g. ['DEVICE_ID']; a trailing '?' marks an optional one. */
  args?: string[];
  flags: Record<string, FlagSpec>;
  example: string | string[];
  /** More text printed after the flags. */
  notes?: string;
  run(flags: Flags, args: string[]): Promise<number>;
}

export interface GroupSpec {
  summary: string;
  subcommands: Record<string, CommandSpec>;
}

export type Entry = CommandSpec | GroupSpec;
export const isGroup = (e: Entry): e is GroupSpec => 'subcommands' in e;

/** Exit codes, documented in the README (section CLI). */
export const EXIT = { OK: 0, FAILED: 1, USAGE: 2, UNREACHABLE: 3, INTERRUPTED: 130 } as const;

export class UsageError extends Error {}

/** Positional arguments that are numeric ids: anything else is a usage error, not a 404. */
const NUMERIC_ARGS = new Set(['CERTIFICATE_ID', 'ALERT_ID']);

/** The value of one flag, checked against its choices and check: a bad value is a UsageError that says what is allowed. */
export function checkFlagValue(name: string, spec: FlagSpec, value: string): string {
  if (spec.choices) {
    const match = spec.choices.find((c) => c.toLowerCase() === value.toLowerCase());
    if (match === undefined) throw new UsageError(`--${name} must be one of ${spec.choices.join(', ')} (got "${value}")`);
    return match;
  }
  const problem = spec.check?.(value);
  if (problem) throw new UsageError(`--${name} must be ${problem} (got "${value}")`);
  return value;
}

const HELP_FLAG: FlagSpec = { type: 'boolean', help: 'show this help and exit' };

export function commandHelp(path: string, spec: CommandSpec): string {
  const flags = { ...spec.flags, help: HELP_FLAG };
  const args = (spec.args ?? []).map((a) => (a.endsWith('?') ? `[${a.slice(0, -1)}]` : a)).join(' ');
  const left = Object.entries(flags).map(([name, f]) => `--${name}${f.type === 'string' ? ` ${f.value ?? 'VALUE'}` : ''}`);
  const help = (f: FlagSpec) => (f.choices && !f.choices.every((c) => f.help.includes(c)) ? `${f.help} (${f.choices.join(', ')})` : f.help);
  const width = Math.max(...left.map((l) => l.length)) + 2;
  const lines = Object.values(flags).map((f, i) => `  ${left[i].padEnd(width)}${help(f)}`);
  const examples = Array.isArray(spec.example) ? spec.example : [spec.example];
  return [
    `${spec.summary}`,
    '',
    `Usage: certfleet ${path}${args ? ` ${args}` : ''} [flags]`,
    '',
    'Flags:',
    ...lines,
    ...(spec.notes ? ['', spec.notes] : []),
    '',
    examples.length > 1 ? 'Examples:' : 'Example:',
    ...examples.map((e) => `  ${e}`),
  ].join('\n');
}

export function groupHelp(path: string, group: GroupSpec): string {
  const names = Object.keys(group.subcommands);
  const width = Math.max(...names.map((n) => n.length)) + 2;
  return [
    group.summary,
    '',
    `Usage: certfleet ${path} <command> [flags]`,
    '',
    'Commands:',
    ...names.map((n) => `  ${n.padEnd(width)}${group.subcommands[n].summary}`),
    '',
    `Run "certfleet ${path} <command> --help" for the flags and an example.`,
  ].join('\n');
}

/** Parses argv for one command: unknown flags, missing or extra arguments are UsageErrors. */
export function parseCommand(spec: CommandSpec, argv: string[]): { flags: Flags; args: string[]; help: boolean } {
  const options: NonNullable<ParseArgsConfig['options']> = { help: { type: 'boolean', short: 'h' } };
  for (const [name, f] of Object.entries(spec.flags)) options[name] = { type: f.type };
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/\. To specify a positional argument.*$/s, ''));
  }
  const values = parsed.values as Flags;
  if (values.help) return { flags: values, args: [], help: true };
  for (const [name, f] of Object.entries(spec.flags)) {
    const v = values[name];
    if (typeof v === 'string') values[name] = checkFlagValue(name, f, v);
  }
  const names = spec.args ?? [];
  const required = names.filter((a) => !a.endsWith('?')).length;
  if (parsed.positionals.length < required) throw new UsageError(`missing argument ${names[parsed.positionals.length].replace(/\?$/, '')}`);
  if (parsed.positionals.length > names.length) throw new UsageError(`unexpected argument "${parsed.positionals[names.length]}"`);
  parsed.positionals.forEach((value, i) => {
    const name = names[i].replace(/\?$/, '');
    if (NUMERIC_ARGS.has(name) && !/^[1-9]\d{0,15}$/.test(value)) throw new UsageError(`${name} must be a positive whole number (got "${value}")`);
  });
  return { flags: values, args: parsed.positionals, help: false };
}
