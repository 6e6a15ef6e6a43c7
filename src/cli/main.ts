import { ApiError, ConnectionError } from './client/api-client.ts';
import { MissingCredentialsError } from './client/credentials.ts';
import { commands } from './commands.ts';
import { EXIT, UsageError, commandHelp, groupHelp, isGroup, parseCommand, type CommandSpec, type Entry } from './spec.ts';

const USAGE_TAIL = `
Client commands talk to a running certfleet: --url/--token, or CERTFLEET_URL/CERTFLEET_TOKEN,
or what "certfleet login" stored. Service commands read the service's environment
(DATABASE_URL, CERTFLEET_DATA_DIR, ...). Every command takes --json and --help.

Exit codes: 0 success; 1 the operation failed (an API error, a CRL that does not verify,
a device that failed in rotate-expiring); 2 usage error (unknown command or flag, missing
argument); 3 certfleet unreachable, no or rejected credentials (401/403); 130 interrupted.`;

/** The top-level usage text (`certfleet --help`); the build saves it as dist/cli/usage.txt for bin/certfleet.js's fast path. */
export function topUsage(): string {
  const names = Object.keys(commands);
  const width = Math.max(...names.map((n) => n.length)) + 2;
  return ['Usage: certfleet <command> [flags]', '', 'Commands:', ...names.map((n) => `  ${n.padEnd(width)}${commands[n].summary}`), USAGE_TAIL].join('\n');
}

const isHelp = (a: string | undefined) => a === '--help' || a === '-h' || a === 'help';

/** Resolves argv to one command, with its path for help texts; a usage problem prints usage and exits 2. */
function resolve(argv: string[]): { path: string; spec: CommandSpec; rest: string[] } | { exit: number } {
  const [name, ...rest] = argv;
  if (!name || isHelp(name)) {
    (name ? console.log : console.error)(topUsage());
    return { exit: name ? EXIT.OK : EXIT.USAGE };
  }
  const entry: Entry | undefined = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!entry) {
    console.error(`certfleet: unknown command "${name}"\n\n${topUsage()}`);
    return { exit: EXIT.USAGE };
  }
  if (!isGroup(entry)) return { path: name, spec: entry, rest };
  const [sub, ...subRest] = rest;
  if (!sub || isHelp(sub)) {
    (sub ? console.log : console.error)(groupHelp(name, entry));
    return { exit: sub ? EXIT.OK : EXIT.USAGE };
  }
  const spec = Object.hasOwn(entry.subcommands, sub) ? entry.subcommands[sub] : undefined;
  if (!spec) {
    console.error(`certfleet ${name}: unknown command "${sub}"\n\n${groupHelp(name, entry)}`);
    return { exit: EXIT.USAGE };
  }
  return { path: `${name} ${sub}`, spec, rest: subRest };
}

export async function main(argv: string[]): Promise<number> {
  const resolved = resolve(argv);
  if ('exit' in resolved) return resolved.exit;
  const { path, spec, rest } = resolved;
  try {
    const { flags, args, help } = parseCommand(spec, rest);
    if (help) {
      console.log(commandHelp(path, spec));
      return EXIT.OK;
    }
    return await spec.run(flags, args);
  } catch (e) {
    return reportError(path, spec, e, rest.includes('--json'));
  }
}

function reportError(path: string, spec: CommandSpec, e: unknown, json: boolean): number {
  if (e instanceof UsageError) {
    console.error(`certfleet ${path}: ${e.message}\n\n${commandHelp(path, spec)}`);
    return EXIT.USAGE;
  }
  const unreachable = e instanceof ConnectionError || e instanceof MissingCredentialsError || (e instanceof ApiError && (e.status === 401 || e.status === 403));
  if (json && e instanceof ApiError) console.error(JSON.stringify(e.body));
  else console.error(`certfleet ${path}: ${(e as Error).message}`);
  return unreachable ? EXIT.UNREACHABLE : EXIT.FAILED;
}
