import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDeviceCa, writeDeviceCa } from '../../src/pki/device-ca.ts';
import { cliHere } from './cli-here.ts';
import { createTestDatabase, type TestDatabase } from './databases.ts';
import { freePort, startMosquitto, type RunningMosquitto } from './mosquitto.ts';

/**
 * What a real-broker test starts from: a folder the broker user can read (crl/, certs/), a
 * Postgres test database, a Device CA in ca/, and the environment pointing certfleet at them.
 */
export async function brokerTestFixture(
  name: string,
  options: { /** The Device CA's notBefore (a suite whose clock starts in the past). Default: now. */ now?: Date; /** More certfleet settings. */ env?: Record<string, string> } = {},
): Promise<{ tmp: string; database: TestDatabase; env: Record<string, string> }> {
  const tmp = mkdtempSync(join(tmpdir(), `certfleet-${name}-`));
  chmodSync(tmp, 0o755); // the broker runs as user mosquitto when started as root
  for (const dir of ['crl', 'certs']) mkdirSync(join(tmp, dir), { mode: 0o755 });
  const database = await createTestDatabase('pg');
  const ca = await createDeviceCa({ now: options.now ?? new Date(), commonName: `certfleet ${name} Device CA` });
  await writeDeviceCa(ca, join(tmp, 'ca', 'device-ca.crt'), join(tmp, 'ca', 'device-ca.key'));
  const env = {
    DATABASE_URL: database.url!,
    CERTFLEET_AUTH: 'development', // development tokens on Postgres, explicitly
    DEVICE_CA_CERT_PATH: join(tmp, 'ca', 'device-ca.crt'),
    DEVICE_CA_KEY_PATH: join(tmp, 'ca', 'device-ca.key'),
    CRL_OUTPUT_PATH: join(tmp, 'crl', 'device-crl.pem'),
    CERTFLEET_DATA_DIR: join(tmp, 'data'),
    ...options.env,
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

/** What `certfleet broker-config --json` prints (the part the suites read). */
export interface BrokerConfigOutput {
  env: Record<string, string>;
  files: Record<string, string> & { combinedCa: string };
  recovery?: { port: number; username: string; passwordFile: string };
}

export interface RunningBrokerTest {
  tmp: string;
  /** A path in the test's folder. */
  file(name: string): string;
  database: TestDatabase;
  broker: RunningMosquitto;
  /** The device listener's port, the admin listener's, then the extra ones asked for. */
  port: number;
  adminPort: number;
  extraPorts: number[];
  config: BrokerConfigOutput;
  /** certfleet's settings: brokerTestFixture's, then what broker-config printed. */
  env: Record<string, string>;
  /** Stops the broker, closes the database and removes the folder (close the service first). */
  close(): Promise<void>;
}

/**
 * brokerTestFixture, then `broker-config --out <tmp>/broker --port P --admin-port A <args>` in this
 * process on free ports, and the Mosquitto it wrote, started as written: the set-up of the MQTT
 * renewal and recovery suites. The suite starts certfleet with `env`.
 */
export async function startBrokerTest(
  name: string,
  options: { now?: Date; env?: Record<string, string>; /** Free ports beyond the device and admin listeners'. */ extraPorts?: number; args: (extraPorts: number[]) => string[] },
): Promise<RunningBrokerTest> {
  const { tmp, database, env } = await brokerTestFixture(name, options);
  let broker: RunningMosquitto | undefined;
  const close = () => closeBrokerTest({ broker, database, tmp });
  try {
    const ports = new Set<number>();
    while (ports.size < 2 + (options.extraPorts ?? 0)) ports.add(await freePort());
    const [port, adminPort, ...extraPorts] = [...ports] as [number, number, ...number[]];
    const config = (await brokerConfigHere(env, join(tmp, 'broker'), ['--port', String(port), '--admin-port', String(adminPort), ...options.args(extraPorts)])) as BrokerConfigOutput;
    broker = await startMosquitto({ configDir: join(tmp, 'broker'), asWritten: true });
    return { tmp, file: (f) => join(tmp, f), database, broker, port, adminPort, extraPorts, config, env: { ...env, ...config.env }, close };
  } catch (error) {
    await close();
    throw error;
  }
}
