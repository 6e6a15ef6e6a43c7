/**
 * deploy/: the compose file parses and is wired the way the README says (worker in the broker's
 * PID namespace, no Docker socket, shared pid/CRL/secret volumes at the same paths), and the
 * committed deploy/mosquitto/mosquitto.conf is exactly what the compose file's `broker-config`
 * step writes. `docker compose config` runs too where the client has the compose plugin.
 *
 * UPDATE_DEPLOY=1 rewrites deploy/mosquitto/mosquitto.conf from the broker-config output.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, posix } from 'node:path';
import { parse } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { createThrowawayDatabase } from './support/databases.ts';
import { ensureDistBuilt, shortLivedNodeFlags } from './support/dist.ts';
import { freePort } from './support/mosquitto.ts';
import { scaled } from './support/timeouts.ts';

const ROOT = join(import.meta.dirname, '..');
const DEPLOY = join(ROOT, 'deploy');
const BIN = join(ROOT, 'test', 'support', 'certfleet-source.js');

interface Service {
  image?: string;
  depends_on?: Record<string, { condition?: string }>;
  healthcheck?: { test?: string[] | string };
  restart?: string;
  build?: unknown;
  command?: string[] | string;
  environment?: Record<string, string>;
  volumes?: string[];
  pid?: string;
  init?: boolean;
  cap_add?: string[];
  cap_drop?: string[];
  user?: string;
  entrypoint?: string[];
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

/** Compose interpolation of a literal: `$$` is one `$`. */
const uncompose = (text: string) => text.replace(/\$\$/g, '$');
/** The broker-reloader's loop and the worker's BROKER_RELOAD_COMMAND, as the shells run them. */
const reloaderScript = () => uncompose(([] as string[]).concat(services['broker-reloader'].command ?? []).join('\n'));
const reloadCommand = () => uncompose(services.worker.environment!.BROKER_RELOAD_COMMAND);
/** The request file the worker writes and the answer file the reloader writes (from the scripts). */
function reloadFiles(): { request: string; answer: string } {
  const request = /> (\S+)\.tmp/.exec(reloadCommand())![1];
  const answer = /> (\S+)\.tmp/.exec(reloaderScript())![1];
  expect(reloaderScript()).toContain(`cat ${request}`);
  expect(reloadCommand()).toContain(`cat ${answer}`);
  return { request, answer };
}

/**
 * The init service's `broker-config` step, run as the compose file has it with every absolute path
 * moved under a temp root (its CRL exists: no initial publication): once for the file, as a real
 * process (a start opens the data dir's database, seconds of CPU). Its output and files are what
 * the compose file mounts; the server-CA test then renews on the same root.
 */
let initStep: { root: string; under: (p: string) => string; args: string[]; env: NodeJS.ProcessEnv; stdout: string } | undefined;
function brokerConfigInitStep() {
  if (initStep) return initStep;
  const root = mkdtempSync(join(tmpdir(), 'certfleet-deploy-'));
  const under = (p: string) => join(root, p);
  const initEnv = services.init.environment!;
  const args = brokerConfigArgs().map((a, i, all) => (a.startsWith('/') && all[i - 1] !== '--dynsec-plugin' && all[i - 1] !== '--acl-plugin' ? under(a) : a));
  const crlPath = under(initEnv.CRL_OUTPUT_PATH);
  mkdirSync(dirname(crlPath), { recursive: true });
  writeFileSync(crlPath, '-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n'); // exists: no initial publication
  const env = {
    ...process.env,
    CERTFLEET_DATA_DIR: under('/var/lib/certfleet/data'),
    DEVICE_CA_CERT_PATH: under(initEnv.DEVICE_CA_CERT_PATH),
    DEVICE_CA_KEY_PATH: under(initEnv.DEVICE_CA_KEY_PATH),
    CRL_OUTPUT_PATH: crlPath,
  };
  const res = spawnSync(process.execPath, [BIN, ...args, '--json'], { encoding: 'utf8', timeout: 60_000, env });
  expect(res.status, res.stderr).toBe(0);
  initStep = { root, under, args, env, stdout: res.stdout };
  return initStep;
}

describe('deploy/docker-compose.yml', () => {
  it('has postgres, the certfleet api and worker, and mosquitto; the broker is signalled without the Docker socket or any capability', () => {
    for (const name of ['postgres', 'api', 'worker', 'mosquitto', 'init', 'broker-reloader']) expect(services[name], name).toBeDefined();
    expect(JSON.stringify(compose)).not.toMatch(/docker\.sock/);
    const { worker, mosquitto, api } = services;
    const reloader = services['broker-reloader'];
    expect(worker.command).toEqual(['worker', '--metrics-port', '9464']);
    expect(api.command).toEqual(['api']);
    expect(mosquitto.init).toBe(true); // Mosquitto must not be PID 1 (PID 1 ignores signals it has no handler for)
    expect(mosquitto.image).toBe('certfleet-mosquitto:local'); // eclipse-mosquitto:2.0 + the certfleet_acl plugin (deploy/mosquitto/Dockerfile)
    expect(existsSync(join(DEPLOY, 'Dockerfile'))).toBe(true);
    // Docker does not make an added capability effective for a non-root user: nobody relies on one.
    for (const [name, service] of Object.entries(services)) expect(service.cap_add ?? [], name).toEqual([]);
    // The signaller: Mosquitto's uid (1883, the `--broker-user` of broker-config) in Mosquitto's PID
    // namespace, so kill(2) needs no capability; it holds nothing worth stealing.
    const brokerUid = brokerConfigArgs()[brokerConfigArgs().indexOf('--broker-user') + 1].split(':')[0];
    expect(reloader.user?.split(':')[0]).toBe(brokerUid);
    expect(reloader.pid).toBe('service:mosquitto');
    expect(reloader.cap_drop).toEqual(['ALL']);
    expect(reloader.environment ?? {}).toEqual({});
    const sensitive = new Set(['device-ca', 'secrets', 'certfleet-data', 'crl', 'broker-certs', 'pgdata']);
    for (const spec of reloader.volumes ?? []) expect(sensitive.has(spec.split(':')[0]), spec).toBe(false);
    // The worker holds the keys: it shares neither the broker's uid nor its PID namespace.
    expect(worker.pid).toBeUndefined();
    expect(worker.user).toBeUndefined(); // the image's node user
    expect(worker.cap_drop).toEqual(['ALL']);

    const env = worker.environment!;
    // The pid file Mosquitto writes is the one the reloader reads, through the same volume.
    const pidFile = brokerConfigArgs()[brokerConfigArgs().indexOf('--pid-file') + 1];
    expect(reloaderScript()).toContain(`cat ${pidFile}`);
    expect(mountFor(reloader, pidFile)).toMatchObject({ readOnly: true });
    expect(mountFor(mosquitto, pidFile)).toEqual({ ...mountFor(reloader, pidFile), readOnly: false });
    // Requests go from the worker to the reloader, answers back, each through a volume only its writer may write.
    const { request, answer } = reloadFiles();
    expect(mountFor(worker, request)).toMatchObject({ readOnly: false });
    expect(mountFor(reloader, request)).toEqual({ ...mountFor(worker, request), readOnly: true });
    expect(mountFor(reloader, answer)).toMatchObject({ readOnly: false });
    expect(mountFor(worker, answer)).toEqual({ ...mountFor(reloader, answer), readOnly: true });
    expect(env.BROKER_PID_FILE).toBeUndefined();
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

    // The init step's broker-config, run with every absolute path moved under a temp root.
    const { root, under, stdout } = brokerConfigInitStep();
    const out = JSON.parse(stdout) as { files: { config: string }; env: Record<string, string>; start_command: string };
    const written = readFileSync(out.files.config, 'utf8').split(root).join('');
    const committed = join(DEPLOY, 'mosquitto', 'mosquitto.conf');
    if (process.env.UPDATE_DEPLOY) writeFileSync(committed, written);
    expect(written).toBe(readFileSync(committed, 'utf8'));

    // What it prints for certfleet is what the compose file gives the worker.
    const unrooted = Object.fromEntries(Object.entries(out.env).map(([k, v]) => [k, v.split(root).join('')]));
    expect(unrooted.BROKER_PID_FILE).toBe(brokerConfigArgs()[brokerConfigArgs().indexOf('--pid-file') + 1]);
    expect(unrooted.CRL_OUTPUT_PATH).toBe(worker.environment!.CRL_OUTPUT_PATH);
    // Topic access: the certfleet_acl plugin (default deny, no acl_file), loaded before the dynamic
    // security plugin; its grants file is the one the worker keeps current and the broker reads.
    const grantsPath = worker.environment!.BROKER_GRANTS_PATH;
    expect(unrooted.BROKER_GRANTS_PATH).toBe(grantsPath);
    expect(unrooted.BROKER_ACL_PATH).toBeUndefined();
    expect(worker.environment!.BROKER_ACL_PATH).toBeUndefined();
    expect(unrooted.BROKER_ACL_PERMISSIVE).toBeUndefined();
    expect(written).not.toMatch(/^acl_file /m);
    const pluginPath = brokerConfigArgs()[brokerConfigArgs().indexOf('--acl-plugin') + 1];
    expect(written.split('\n').filter((l) => l.startsWith('plugin '))).toEqual([`plugin ${pluginPath}`, 'plugin /usr/lib/mosquitto_dynamic_security.so']);
    expect(written).toContain(`plugin_opt_grants_file ${grantsPath}\n`);
    expect(written).toContain(`plugin_opt_admin_username ${worker.environment!.BROKER_ADMIN_USERNAME}\n`);
    expect(mountFor(worker, grantsPath)?.readOnly).toBe(false);
    expect(mountFor(mosquitto, grantsPath)).toEqual({ ...mountFor(worker, grantsPath), readOnly: true });
    expect(readFileSync(under(grantsPath), 'utf8').split('\n').filter((l) => l && !l.startsWith('#'))).toEqual([]);
    expect(unrooted.BROKER_ADMIN_PASSWORD_FILE).toBe(worker.environment!.BROKER_ADMIN_PASSWORD_FILE);
    expect(unrooted.BROKER_ADMIN_USERNAME).toBe(worker.environment!.BROKER_ADMIN_USERNAME);
    expect(new URL(unrooted.BROKER_ADMIN_URL).port).toBe(new URL(worker.environment!.BROKER_ADMIN_URL).port);
    expect(out.start_command).toBe(`mosquitto -c ${out.files.config}`);
    // The CRL hash folder layout (issue 22): the placeholder crlfile in the broker's own folder, the
    // capath beside the CRL the worker writes (same volume, so the relative links resolve in the broker).
    expect(written).toContain(`crlfile /mosquitto/certs/crl-placeholder.pem\n`);
    expect(written).toContain(`capath ${worker.environment!.CRL_OUTPUT_PATH}.hash\n`);
    expect(written).not.toContain(`crlfile ${worker.environment!.CRL_OUTPUT_PATH}`);
    expect(readFileSync(under('/mosquitto/certs/crl-placeholder.pem'), 'latin1')).toMatch(/^-----BEGIN X509 CRL-----/);
    const links = readdirSync(under(`${worker.environment!.CRL_OUTPUT_PATH}.hash`));
    expect(links).toHaveLength(1);
    expect(links[0]).toMatch(/^[0-9a-f]{8}\.r0$/);
    expect(readlinkSync(join(under(`${worker.environment!.CRL_OUTPUT_PATH}.hash`), links[0]!))).toBe(`../${posix.basename(worker.environment!.CRL_OUTPUT_PATH)}`);
    expect(mountFor(mosquitto, `${worker.environment!.CRL_OUTPUT_PATH}.hash/x.r0`)).toEqual({ ...mountFor(worker, worker.environment!.CRL_OUTPUT_PATH), readOnly: true });
    expect(written).toContain(`pid_file ${unrooted.BROKER_PID_FILE}`);
    expect(written).toMatch(/^plugin \/usr\/lib\/mosquitto_dynamic_security\.so$/m);
    expect(posix.isAbsolute(unrooted.BROKER_PID_FILE)).toBe(true);
  });

  it('builds the broker image with the certfleet_acl plugin where mosquitto.conf loads it (checked offline)', () => {
    const { mosquitto } = services;
    const pluginPath = brokerConfigArgs()[brokerConfigArgs().indexOf('--acl-plugin') + 1];
    expect(pluginPath).toBe('/usr/lib/certfleet_acl.so');
    expect(mosquitto.build).toEqual({ context: '..', dockerfile: 'deploy/mosquitto/Dockerfile' });
    const dockerfile = readFileSync(join(DEPLOY, 'mosquitto', 'Dockerfile'), 'utf8');
    const from = [...dockerfile.matchAll(/^FROM (\S+)(?: AS (\S+))?$/gm)].map((m) => [m[1], m[2]]);
    // Compiled in the broker's own base image (same musl, Alpine's Mosquitto 2.0 headers), shipped in it.
    expect(from).toEqual([['eclipse-mosquitto:2.0', 'acl-plugin'], ['eclipse-mosquitto:2.0', undefined]]);
    // openssl-dev: the plugin checks which CA signed a client certificate (CA scope binding) and hashes a claim client's certificate (MQTT provisioning).
    expect(dockerfile).toMatch(/^RUN apk add --no-cache build-base mosquitto-dev openssl-dev$/m);
    expect(dockerfile).toMatch(/^COPY broker-plugin\/certfleet_acl\.c \/src\/certfleet_acl\.c$/m);
    expect(dockerfile).toMatch(/^RUN cc -shared -fPIC .*-o \/src\/certfleet_acl\.so \/src\/certfleet_acl\.c -lcrypto$/m);
    expect(dockerfile).toContain(`COPY --from=acl-plugin /src/certfleet_acl.so ${pluginPath}\n`);
    expect(existsSync(join(ROOT, 'broker-plugin', 'certfleet_acl.c'))).toBe(true);
    // The build context is the repository root; its ignore file lets the plugin source in.
    const ignore = readFileSync(join(DEPLOY, 'mosquitto', 'Dockerfile.dockerignore'), 'utf8').split('\n');
    expect(ignore).toContain('**');
    expect(ignore).toContain('!broker-plugin/**');
    // The broker-reloader shares the broker's base image (same uid 1883).
    expect(services['broker-reloader'].image).toBe('eclipse-mosquitto:2.0');
  });

  it("keeps the server CA key out of every volume the broker mounts, and --renew still issues from the same server CA", () => {
    const keyDir = brokerConfigArgs()[brokerConfigArgs().indexOf('--server-ca-key-dir') + 1];
    const outDir = brokerConfigArgs()[brokerConfigArgs().indexOf('--out') + 1];
    // the key folder is in a volume the broker does not mount
    expect(mountFor(services.mosquitto, `${keyDir}/server-ca.key`)).toBeNull();
    expect(mountFor(services.init, `${keyDir}/server-ca.key`)?.source).toBe('secrets');
    // The init step as the compose file runs it (the same run the mosquitto.conf test reads), then --renew on its files.
    const { under, args, env } = brokerConfigInitStep();
    const run = (extra: string[]) => {
      const res = spawnSync(process.execPath, [BIN, ...args, ...extra, '--json'], { encoding: 'utf8', timeout: 60_000, env });
      expect(res.status, res.stderr).toBe(0);
    };
    const filesUnder = (dir: string): string[] =>
      existsSync(dir) ? readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)])) : [];
    for (const spec of services.mosquitto.volumes ?? []) {
      const target = spec.split(':')[1];
      expect(filesUnder(under(target)).filter((f) => basename(f) === 'server-ca.key'), target).toEqual([]);
    }
    expect(existsSync(join(under(keyDir), 'server-ca.key'))).toBe(true);
    const caBefore = readFileSync(join(under(outDir), 'server-ca.crt'), 'utf8');
    const certBefore = readFileSync(join(under(outDir), 'server.crt'), 'utf8');
    run(['--renew']);
    expect(readFileSync(join(under(outDir), 'server-ca.crt'), 'utf8')).toBe(caBefore); // devices keep their combined-ca.crt
    expect(readFileSync(join(under(outDir), 'server.crt'), 'utf8')).not.toBe(certBefore);

    // A key an older version left next to the broker files is moved out, and --renew keeps working.
    renameSync(join(under(keyDir), 'server-ca.key'), join(under(outDir), 'server-ca.key'));
    run(['--renew']);
    expect(existsSync(join(under(outDir), 'server-ca.key'))).toBe(false);
    expect(existsSync(join(under(keyDir), 'server-ca.key'))).toBe(true);
    expect(readFileSync(join(under(outDir), 'server-ca.crt'), 'utf8')).toBe(caBefore);
  });

  // Real processes and real signals across real uids (setpriv needs root: skipped otherwise, with the reason).
  const asRoot = process.getuid?.() === 0 && spawnSync('setpriv', ['--version']).status === 0;
  it.skipIf(!asRoot)(`the broker-reloader signals the broker with its uid where the worker's uid cannot, and reports failures${asRoot ? '' : ' (skipped: needs root and setpriv)'}`, async () => {
    const root = mkdtempSync(join(tmpdir(), 'certfleet-reload-'));
    chmodSync(root, 0o755);
    const { request, answer } = reloadFiles();
    const pidFile = brokerConfigArgs()[brokerConfigArgs().indexOf('--pid-file') + 1];
    const map = (text: string) => text.split(dirname(dirname(request))).join(join(root, 'reload')).split(pidFile).join(join(root, 'run', 'broker.pid'));
    const brokerUid = Number(services['broker-reloader'].user!.split(':')[0]);
    const workerUid = 1000; // the image's node user
    for (const [dir, uid] of [[dirname(map(request)), workerUid], [dirname(map(answer)), brokerUid], [join(root, 'run'), brokerUid]] as const) {
      mkdirSync(dir, { recursive: true, mode: 0o755 });
      chownSync(dir, uid, uid);
    }
    chmodSync(join(root, 'reload'), 0o755);
    const as = (uid: number, script: string, options: { detached?: boolean } = {}) =>
      spawn('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '/bin/sh', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'], ...options });
    const outputOf = (child: ReturnType<typeof spawn>) =>
      new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        let out = '';
        let err = '';
        child.stdout!.on('data', (d) => (out += d));
        child.stderr!.on('data', (d) => (err += d));
        child.on('close', (code) => resolve({ code, out, err }));
      });
    // "Mosquitto": a process of the broker's uid that says when it gets SIGHUP.
    const broker = as(brokerUid, `trap 'echo HUP' HUP; echo $$ > ${join(root, 'run', 'broker.pid')}; while :; do sleep 0.05; done`);
    let hups = 0;
    const hupSeen: (() => void)[] = [];
    broker.stdout!.on('data', (d: Buffer) => {
      hups += String(d).split('HUP').length - 1;
      hupSeen.splice(0).forEach((f) => f());
    });
    const reloaderProcess = as(brokerUid, map(reloaderScript()));
    try {
      while (!existsSync(join(root, 'run', 'broker.pid')) || readFileSync(join(root, 'run', 'broker.pid'), 'utf8').trim() === '') await new Promise((r) => setTimeout(r, 20));
      const brokerPid = readFileSync(join(root, 'run', 'broker.pid'), 'utf8').trim();
      // What failed before: the worker's uid may not signal the broker (no capability takes effect for it).
      const direct = await outputOf(as(workerUid, `kill -HUP ${brokerPid}`));
      expect(direct.code).not.toBe(0);
      expect(direct.err).toMatch(/not permitted/i);
      // What works now: the worker's reload command, answered by the reloader.
      const seen = new Promise<void>((r) => hupSeen.push(r));
      const ok = await outputOf(as(workerUid, map(reloadCommand())));
      expect(ok.code, ok.err).toBe(0);
      await seen;
      expect(hups).toBe(1);
      // A broker that is gone: the command fails with the reason (certfleet counts and retries it).
      writeFileSync(join(root, 'run', 'broker.pid'), '999999\n');
      const failed = await outputOf(as(workerUid, map(reloadCommand())));
      expect(failed.code).toBe(1);
      expect(failed.err).toMatch(/failed/);
    } finally {
      reloaderProcess.kill('SIGKILL');
      broker.kill('SIGKILL');
    }
  });

  it('for Compose v2: every service that others wait for has a healthcheck, every dependency a condition', () => {
    expect(readFileSync(join(DEPLOY, 'docker-compose.yml'), 'utf8')).toMatch(/Compose v2/);
    const oneShot = Object.keys(services).filter((name) => services[name].restart === 'no');
    expect(oneShot).toEqual(['init']);
    for (const [name, service] of Object.entries(services)) {
      if (!oneShot.includes(name)) expect(service.healthcheck?.test, `${name} healthcheck`).toBeDefined();
      if (name !== 'postgres') expect(Object.keys(service.depends_on ?? {}).length, `${name} depends_on`).toBeGreaterThan(0);
      for (const [dependency, { condition }] of Object.entries(service.depends_on ?? {})) {
        expect(condition, `${name} -> ${dependency}`).toBe(oneShot.includes(dependency) ? 'service_completed_successfully' : 'service_healthy');
      }
    }
    // The worker's healthcheck asks the metrics port its command opens.
    expect(JSON.stringify(services.worker.healthcheck!.test)).toContain(':9464/metrics');
  });

  const dockerCompose = spawnSync('docker', ['compose', 'version'], { encoding: 'utf8' }).status === 0;
  // Reported as skipped, with the reason in its name, where the compose client is missing.
  it.skipIf(!dockerCompose)(`passes \`docker compose config\`${dockerCompose ? '' : ' (skipped: no `docker compose` client on this machine)'}`, () => {
    const res = spawnSync('docker', ['compose', '-f', join(DEPLOY, 'docker-compose.yml'), 'config', '-q'], { encoding: 'utf8' });
    expect(res.status, res.stderr).toBe(0);
  });
});

/** deploy/Dockerfile as stages of instructions (continuation lines joined). */
function dockerfileStages(): { name: string; workdir: string; instructions: { op: string; args: string }[] }[] {
  const text = readFileSync(join(DEPLOY, 'Dockerfile'), 'utf8').replace(/\\\n\s*/g, ' ');
  const stages: { name: string; workdir: string; instructions: { op: string; args: string }[] }[] = [];
  for (const line of text.split('\n')) {
    const m = /^([A-Z]+)\s+(.*)$/.exec(line.trim());
    if (!m) continue;
    const [, op, args] = m;
    if (op === 'FROM') stages.push({ name: / AS (\S+)$/i.exec(args)?.[1] ?? String(stages.length), workdir: '/', instructions: [] });
    else if (stages.length) {
      const stage = stages[stages.length - 1];
      if (op === 'WORKDIR') stage.workdir = args.trim();
      stage.instructions.push({ op, args });
    }
  }
  return stages;
}

function listFiles(dir: string, prefix = ''): string[] {
  return readdirSync(join(dir, prefix), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? listFiles(dir, posix.join(prefix, e.name)) : [posix.join(prefix, e.name)],
  );
}

describe('deploy/Dockerfile', () => {
  const stages = dockerfileStages();
  const runtime = stages[stages.length - 1];
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> };
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
  let image = '';

  beforeAll(() => {
    ensureDistBuilt();
    // The runtime stage's file list, derived without a Docker engine: its `npm ci` run on the
    // package files it copies, then its COPY lines (from the context or from the build stage).
    image = mkdtempSync(join(tmpdir(), 'certfleet-image-'));
    for (const { op, args } of runtime.instructions) {
      if (op === 'COPY') {
        const parts = args.split(/\s+/);
        const from = parts.find((p) => p.startsWith('--from='))?.slice('--from='.length);
        const [dest, ...sources] = parts.filter((p) => !p.startsWith('--')).reverse();
        for (const source of sources) {
          const fromStage = stages.find((s) => s.name === from);
          // The build stage's WORKDIR holds the context as copied there, plus what `npm ci` built.
          const local = fromStage ? join(ROOT, posix.relative(fromStage.workdir, source)) : join(ROOT, source);
          const target = dest.endsWith('/') ? join(image, dest, basename(source)) : join(image, dest);
          cpSync(local, target, { recursive: true });
        }
      } else if (op === 'RUN' && /\bnpm ci\b/.test(args)) {
        const install = args.split('&&').find((c) => /\bnpm ci\b/.test(c))!.trim().split(/\s+/);
        const res = spawnSync(install[0], [...install.slice(1), '--prefer-offline'], { cwd: image, encoding: 'utf8', timeout: 600_000 });
        expect(res.status, res.stderr).toBe(0);
      }
    }
  }, scaled(900_000));

  it('is multi-stage, installs with `npm ci --omit=dev`, runs as a non-root user and has a HEALTHCHECK', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const ops = runtime.instructions;
    expect(ops.some((i) => i.op === 'RUN' && /npm ci --omit=dev\b/.test(i.args))).toBe(true);
    const user = ops.filter((i) => i.op === 'USER').at(-1)?.args.trim();
    expect(user).toBeDefined();
    expect(['root', '0', '0:0']).not.toContain(user);
    expect(ops.some((i) => i.op === 'HEALTHCHECK' && /\bCMD\b/.test(i.args))).toBe(true);
    expect(ops.find((i) => i.op === 'ENTRYPOINT')?.args).toBe('["node", "bin/certfleet.js"]');
  });

  it('holds no devDependency and no TypeScript source: only production packages and compiled JavaScript', () => {
    const files = listFiles(image);
    expect(files).toContain('dist/cli/main.js');
    expect(files).toContain('dist/storage/migrations/001-foundation.sql');
    expect(files.filter((f) => !f.startsWith('node_modules/') && /\.ts$/.test(f))).toEqual([]);
    const installed = new Set(Object.keys(lock.packages).filter((p) => p && existsSync(join(image, p))));
    expect(installed.size).toBeGreaterThan(10);
    // A devDependency that a production package also depends on (@types/node for mqtt, semver for
    // fastify, ...) is installed anyway; every other one must be absent.
    for (const name of Object.keys(pkg.devDependencies)) {
      if (lock.packages[`node_modules/${name}`]?.dev) expect(existsSync(join(image, 'node_modules', name)), name).toBe(false);
    }
    for (const name of ['tsx', 'typescript', 'vitest', 'vite', 'esbuild', 'playwright-core']) expect(existsSync(join(image, 'node_modules', name)), name).toBe(false);
    expect([...installed].filter((p) => lock.packages[p].dev)).toEqual([]);
    for (const runtimeDependency of ['mqtt', 'fastify', 'pg']) expect(existsSync(join(image, 'node_modules', runtimeDependency)), runtimeDependency).toBe(true);
  });

  it('runs the compiled CLI with production packages only: --help, token, migrate (SQL found in dist/)', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'certfleet-image-data-'));
    const run = (args: string[], env: Record<string, string> = {}) =>
      spawnSync(process.execPath, ['bin/certfleet.js', ...args], { cwd: image, encoding: 'utf8', timeout: 120_000, env: { ...process.env, CERTFLEET_DATA_DIR: dataDir, ...env } });
    const help = run(['--help']);
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/certfleet <command>/);
    const token = run(['token', '--tenant', 'acme']);
    expect(token.status, token.stderr).toBe(0);
    expect(token.stdout.trim().split('.')).toHaveLength(3);
    const database = await createThrowawayDatabase('certfleet_image');
    try {
      const migrate = run(['migrate', '--json'], { DATABASE_URL: database.url });
      expect(migrate.status, migrate.stderr).toBe(0);
      const migrations = readdirSync(join(ROOT, 'src', 'storage', 'migrations')).filter((f) => f.endsWith('.sql')).sort();
      expect((JSON.parse(migrate.stdout) as { applied: string[] }).applied).toEqual(migrations);
    } finally {
      await database.drop();
    }
  });

  it("answers the image's HEALTHCHECK when serving, and the check fails when nothing listens", async () => {
    const healthcheck = runtime.instructions.find((i) => i.op === 'HEALTHCHECK')!.args;
    const argv = JSON.parse(healthcheck.slice(healthcheck.indexOf('CMD') + 3).trim()) as string[];
    const port = await freePort();
    const check = () => spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: 60_000, env: { ...process.env, PORT: String(port) } });
    expect(check().status).toBe(1); // it would see a down service
    const dataDir = mkdtempSync(join(tmpdir(), 'certfleet-image-serve-'));
    const server = spawn(process.execPath, [...shortLivedNodeFlags(), 'bin/certfleet.js', 'api'], {
      cwd: image,
      env: { ...process.env, CERTFLEET_DATA_DIR: dataDir, PORT: String(port), LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let out = '';
      await new Promise<void>((resolve, reject) => {
        const onData = (d: Buffer) => {
          out += d.toString();
          if (out.includes(`:${port}`)) resolve();
        };
        server.stdout!.on('data', onData);
        server.stderr!.on('data', onData);
        server.once('exit', (code) => reject(new Error(`certfleet api exited (${code}):\n${out}`)));
      });
      const res = check();
      expect(res.status, `${res.stderr}\n${out}`).toBe(0);
    } finally {
      server.kill('SIGTERM');
    }
  });
});
