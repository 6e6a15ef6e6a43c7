/**
 * deploy/: the compose file parses and is wired the way the README says (worker in the broker's
 * PID namespace, no Docker socket, shared pid/CRL/secret volumes at the same paths), and the
 * committed deploy/mosquitto/mosquitto.conf is exactly what the compose file's `broker-config`
 * step writes. `docker compose config` runs too where the client has the compose plugin.
 *
 * UPDATE_DEPLOY=1 rewrites deploy/mosquitto/mosquitto.conf from the broker-config output.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const DEPLOY = join(ROOT, 'deploy');
const BIN = join(ROOT, 'test', 'support', 'certfleet-source.js');

interface Service {
  image?: string;
  build?: unknown;
  command?: string[] | string;
  environment?: Record<string, string>;
  volumes?: string[];
  pid?: string;
  init?: boolean;
  cap_add?: string[];
  cap_drop?: string[];
}
const compose = parse(readFileSync(join(DEPLOY, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
  services: Record<string, Service>;
  volumes: Record<string, unknown>;
};
const { services } = compose;

/** The volume (source) a service mounts at the folder holding `file`, and where. */
function mountFor(service: Service, file: string): { source: string; target: string; readOnly: boolean } | null {
  let best: { source: string; target: string; readOnly: boolean } | null = null;
  for (const spec of service.volumes ?? []) {
    const [source, target, mode] = spec.split(':');
    if ((file === target || file.startsWith(`${target}/`)) && (!best || target.length > best.target.length)) {
      best = { source, target, readOnly: mode === 'ro' };
    }
  }
  return best;
}

/** The `broker-config ...` invocation of the init service, as argv (continuation lines joined). */
function brokerConfigArgs(): string[] {
  const script = ([] as string[]).concat(services.init.command ?? []).join('\n').replace(/\\\n\s*/g, ' ');
  const line = script.split('\n').find((l) => l.includes(' broker-config '));
  if (!line) throw new Error('no broker-config step in the init service');
  const tokens = line.slice(line.indexOf('broker-config')).trim().split(/\s+/);
  return tokens.map((t) => t.replace(/^"(.*)"$/, '$1').replace('$$MQTT_HOST', 'localhost'));
}

describe('deploy/docker-compose.yml', () => {
  it('has postgres, the certfleet api and worker, and mosquitto; the worker signals the broker without the Docker socket', () => {
    for (const name of ['postgres', 'api', 'worker', 'mosquitto', 'init']) expect(services[name], name).toBeDefined();
    expect(JSON.stringify(compose)).not.toMatch(/docker\.sock/);
    const { worker, mosquitto, api } = services;
    expect(worker.command).toEqual(['worker']);
    expect(api.command).toEqual(['api']);
    expect(worker.pid).toBe('service:mosquitto');
    expect(worker.cap_drop).toEqual(['ALL']);
    expect(worker.cap_add).toEqual(['KILL']);
    expect(mosquitto.init).toBe(true); // Mosquitto must not be PID 1: the reloader refuses PID 1
    expect(mosquitto.image).toMatch(/^eclipse-mosquitto:2/);
    expect(existsSync(join(DEPLOY, 'Dockerfile'))).toBe(true);

    const env = worker.environment!;
    // The pid file Mosquitto writes is the one the worker reads, through the same volume.
    const pidMount = mountFor(worker, env.BROKER_PID_FILE);
    expect(pidMount).toMatchObject({ readOnly: true });
    expect(mountFor(mosquitto, env.BROKER_PID_FILE)).toEqual({ ...pidMount, readOnly: false });
    // The CRL the worker writes is the file Mosquitto reads, at the same path.
    const crlMount = mountFor(worker, env.CRL_OUTPUT_PATH);
    expect(crlMount).toMatchObject({ readOnly: false });
    expect(mountFor(mosquitto, env.CRL_OUTPUT_PATH)).toEqual({ ...crlMount, readOnly: true });
    // The dynsec admin password broker-config generates is the one the worker reads.
    const args = brokerConfigArgs();
    const passwordFile = args[args.indexOf('--admin-password-file') + 1];
    expect(env.BROKER_ADMIN_PASSWORD_FILE).toBe(passwordFile);
    expect(mountFor(worker, passwordFile)?.source).toBe(mountFor(services.init, passwordFile)?.source);
    expect(mountFor(services.init, services.init.environment!.CRL_OUTPUT_PATH)?.source).toBe(crlMount!.source);
    for (const name of ['api', 'worker', 'init']) {
      expect(services[name].environment!.DEVICE_CA_KEY_PATH, name).toBe(env.DEVICE_CA_KEY_PATH);
      expect(mountFor(services[name], env.DEVICE_CA_KEY_PATH)?.source, name).toBe('device-ca');
    }
    expect(mountFor(mosquitto, env.DEVICE_CA_KEY_PATH)).toBeNull(); // the broker never sees the CA key
    // Without WEBHOOK_SECRET_KEY, api and worker share the webhook secret key file of the data dir.
    expect(env.WEBHOOK_SECRET_KEY).toBe('${WEBHOOK_SECRET_KEY:-}');
    expect(mountFor(worker, `${env.CERTFLEET_DATA_DIR}/webhook-secret.key`)?.source).toBe(mountFor(api, `${api.environment!.CERTFLEET_DATA_DIR}/webhook-secret.key`)?.source);
    expect(mountFor(worker, `${env.CERTFLEET_DATA_DIR}/webhook-secret.key`)?.source).toBe('certfleet-data');
  });

  it('mounts the committed mosquitto.conf, which is exactly what its broker-config step writes', () => {
    const { mosquitto, worker } = services;
    const confMount = (mosquitto.volumes ?? []).find((v) => v.endsWith(':/mosquitto/config/mosquitto.conf:ro'));
    expect(confMount).toBe('./mosquitto/mosquitto.conf:/mosquitto/config/mosquitto.conf:ro');

    // Run the init step's broker-config with every absolute path moved under a temp root.
    const root = mkdtempSync(join(tmpdir(), 'certfleet-deploy-'));
    const under = (p: string) => join(root, p);
    const initEnv = services.init.environment!;
    const args = brokerConfigArgs().map((a, i, all) => (a.startsWith('/') && all[i - 1] !== '--dynsec-plugin' ? under(a) : a));
    const crlPath = under(initEnv.CRL_OUTPUT_PATH);
    mkdirSync(dirname(crlPath), { recursive: true });
    writeFileSync(crlPath, '-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n'); // exists: no initial publication
    const res = spawnSync(process.execPath, [BIN, ...args, '--json'], {
      encoding: 'utf8',
      timeout: 60_000,
      env: {
        ...process.env,
        CERTFLEET_DATA_DIR: under('/var/lib/certfleet/data'),
        DEVICE_CA_CERT_PATH: under(initEnv.DEVICE_CA_CERT_PATH),
        DEVICE_CA_KEY_PATH: under(initEnv.DEVICE_CA_KEY_PATH),
        CRL_OUTPUT_PATH: crlPath,
      },
    });
    expect(res.status, res.stderr).toBe(0);
    const out = JSON.parse(res.stdout) as { files: { config: string }; env: Record<string, string>; start_command: string };
    const written = readFileSync(out.files.config, 'utf8').split(root).join('');
    const committed = join(DEPLOY, 'mosquitto', 'mosquitto.conf');
    if (process.env.UPDATE_DEPLOY) writeFileSync(committed, written);
    expect(written).toBe(readFileSync(committed, 'utf8'));

    // What it prints for certfleet is what the compose file gives the worker.
    const unrooted = Object.fromEntries(Object.entries(out.env).map(([k, v]) => [k, v.split(root).join('')]));
    expect(unrooted.BROKER_PID_FILE).toBe(worker.environment!.BROKER_PID_FILE);
    expect(unrooted.CRL_OUTPUT_PATH).toBe(worker.environment!.CRL_OUTPUT_PATH);
    expect(unrooted.BROKER_ADMIN_PASSWORD_FILE).toBe(worker.environment!.BROKER_ADMIN_PASSWORD_FILE);
    expect(unrooted.BROKER_ADMIN_USERNAME).toBe(worker.environment!.BROKER_ADMIN_USERNAME);
    expect(new URL(unrooted.BROKER_ADMIN_URL).port).toBe(new URL(worker.environment!.BROKER_ADMIN_URL).port);
    expect(out.start_command).toBe(`mosquitto -c ${out.files.config}`);
    expect(written).toContain(`crlfile ${worker.environment!.CRL_OUTPUT_PATH}`);
    expect(written).toContain(`pid_file ${worker.environment!.BROKER_PID_FILE}`);
    expect(written).toMatch(/^plugin \/usr\/lib\/mosquitto_dynamic_security\.so$/m);
    expect(posix.isAbsolute(worker.environment!.BROKER_PID_FILE)).toBe(true);
  });

  const dockerCompose = spawnSync('docker', ['compose', 'version'], { encoding: 'utf8' }).status === 0;
  // Registered only where the compose client exists (this machine has none): never counted as a skip.
  if (dockerCompose) it('passes `docker compose config`', () => {
    const res = spawnSync('docker', ['compose', '-f', join(DEPLOY, 'docker-compose.yml'), 'config', '-q'], { encoding: 'utf8' });
    expect(res.status, res.stderr).toBe(0);
  });
});
