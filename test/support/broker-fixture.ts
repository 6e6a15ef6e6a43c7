import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDeviceCa, writeDeviceCa } from '../../src/pki/device-ca.ts';
import { cliHere } from './cli-here.ts';
import { createTestDatabase, type TestDatabase } from './databases.ts';

/**
 * What a real-broker test starts from: a folder the broker user can read (crl/, certs/), a
 * Postgres test database, a Device CA in ca/, and the environment pointing certfleet at them.
 */
export async function brokerTestFixture(name: string): Promise<{ tmp: string; database: TestDatabase; env: Record<string, string> }> {
  const tmp = mkdtempSync(join(tmpdir(), `certfleet-${name}-`));
  chmodSync(tmp, 0o755); // the broker runs as user mosquitto when started as root
  for (const dir of ['crl', 'certs']) mkdirSync(join(tmp, dir), { mode: 0o755 });
  const database = await createTestDatabase('pg');
  const ca = await createDeviceCa({ now: new Date(), commonName: `certfleet ${name} Device CA` });
  await writeDeviceCa(ca, join(tmp, 'ca', 'device-ca.crt'), join(tmp, 'ca', 'device-ca.key'));
  const env = {
    DATABASE_URL: database.url!,
    CERTFLEET_AUTH: 'development', // development tokens on Postgres, explicitly
    DEVICE_CA_CERT_PATH: join(tmp, 'ca', 'device-ca.crt'),
    DEVICE_CA_KEY_PATH: join(tmp, 'ca', 'device-ca.key'),
    CRL_OUTPUT_PATH: join(tmp, 'crl', 'device-crl.pem'),
    CERTFLEET_DATA_DIR: join(tmp, 'data'),
  };
  return { tmp, database, env };
}

const BIN = join(import.meta.dirname, 'certfleet-source.js');

/** `certfleet broker-config --out DIR ... --json` as an operator runs it (a process); its parsed output. */
export function runBrokerConfig(env: Record<string, string>, outDir: string, args: string[], timeoutMs = 60_000): { files: Record<string, string>; env: Record<string, string> } {
  const res = spawnSync(process.execPath, [BIN, 'broker-config', '--out', outDir, ...args, '--json'], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: timeoutMs });
  if (res.status !== 0) throw new Error(`broker-config failed (${res.status}): ${res.stderr}`);
  return JSON.parse(res.stdout);
}

/**
 * The same command in this process: what the tests use (a dozen files; a spawn costs ~1 s of CPU
 * loading Node and the modules). test/config-scope.test.ts runs broker-config as a real process.
 */
export async function brokerConfigHere(env: Record<string, string>, outDir: string, args: string[]): Promise<{ files: Record<string, string>; env: Record<string, string> }> {
  const res = await cliHere(['broker-config', '--out', outDir, ...args, '--json'], env);
  if (res.status !== 0) throw new Error(`broker-config failed (${res.status}): ${res.stderr}`);
  return JSON.parse(res.stdout);
}

/** Stops what a real-broker test started, service first (it may signal the broker), and removes its folder. */
export async function closeBrokerTest(parts: { service?: { close(): Promise<void> } | null; broker?: { stop(): Promise<void> }; database?: TestDatabase; tmp?: string }) {
  await parts.service?.close();
  await parts.broker?.stop();
  await parts.database?.close();
  if (parts.tmp) rmSync(parts.tmp, { recursive: true, force: true });
}
