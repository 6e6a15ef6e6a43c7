import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createThrowawayDatabase } from '../../test/support/databases.ts';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'certfleet.js');

/** A throw-away Postgres database for one benchmark run. */
export const benchDatabase = () => createThrowawayDatabase('certfleet_bench');

export function cli(args: string[], env: Record<string, string>): string {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
  if (r.status !== 0) throw new Error(`certfleet ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

/** `certfleet <command>` in a child process on real Postgres with its own CA; resolves once it listens. */
export async function startServer(command: 'api' | 'serve' | 'worker', databaseUrl: string, extraEnv: Record<string, string> = {}, nodeArgs: string[] = []) {
  const dataDir = mkdtempSync(join(tmpdir(), 'certfleet-bench-'));
  cli(['init-ca', '--out', join(dataDir, 'ca')], {});
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const env: Record<string, string> = {
    CERTFLEET_DATA_DIR: dataDir,
    DATABASE_URL: databaseUrl,
    CERTFLEET_AUTH: 'development', // the benchmark mints development tokens
    DEVICE_CA_CERT_PATH: join(dataDir, 'ca', 'device-ca.crt'),
    DEVICE_CA_KEY_PATH: join(dataDir, 'ca', 'device-ca.key'),
    PORT: String(port),
    LOG_LEVEL: 'warn',
    ...extraEnv,
  };
  const child: ChildProcess = spawn(process.execPath, [...nodeArgs, BIN, command], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('listening on')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`server exited (${code}): ${out}`)));
  });
  return {
    base: `http://127.0.0.1:${port}`,
    env,
    dataDir,
    pid: child.pid!,
    token: (tenant: string) => cli(['token', '--tenant', tenant, '--ttl', '2h'], env),
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

export const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
export const fmt = (n: number, digits = 1) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
