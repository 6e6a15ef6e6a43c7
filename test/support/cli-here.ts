import { main } from '../../src/cli/main.ts';

/**
 * The CLI in this process with `env` over process.env while it runs (undefined unsets a name),
 * answered like spawnSync (status, stdout, stderr): for tests that spawned the CLI where the
 * process boundary is not the point, since each spawn costs about 1 s of CPU starting Node and
 * loading the modules. Every command family keeps at least one test through a real process.
 * Not vitest-bound (the benchmarks share the fixtures that use it); one call at a time.
 */
export async function cliHere(args: string[], env: Record<string, string | undefined> = {}): Promise<{ status: number; stdout: string; stderr: string }> {
  const saved = new Map<string, string | undefined>();
  for (const [name, value] of Object.entries(env)) {
    saved.set(name, process.env[name]);
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  const out: string[] = [];
  const err: string[] = [];
  const { log, error } = console;
  console.log = (...a: unknown[]) => void out.push(a.join(' '));
  console.error = (...a: unknown[]) => void err.push(a.join(' '));
  try {
    const status = await main(args);
    return { status, stdout: out.join('\n'), stderr: err.join('\n') };
  } finally {
    console.log = log;
    console.error = error;
    for (const [name, value] of saved) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
}
