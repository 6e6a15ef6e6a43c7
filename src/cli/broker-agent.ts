/** `certfleet broker-agent` and `certfleet brokers list`. */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { BROKER_KINDS, type BrokerKind, type BrokerNodeView } from '../app/broker-nodes.ts';
import { isValidBrokerNodeName } from '../domain/identifiers.ts';
import type { Logger } from '../support/logger.ts';
import { clientFromFlags } from './client/credentials.ts';
import { clientFlags, intCheck, str, wholeNumberCheck } from './client-flags.ts';
import { print, relativeTime, table } from './output.ts';
import { UsageError, type CommandSpec, type Flags, type GroupSpec } from './spec.ts';

const required = (flags: Flags, name: string): string => {
  const v = str(flags[name]);
  if (!v) throw new UsageError(`--${name} is required`);
  return v;
};

function nonNegative(flags: Flags, name: string, fallback: number): number {
  const raw = str(flags[name]);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`--${name} must be a whole number, 0 or more`);
  return n;
}

export const brokerAgentCommand: CommandSpec = {
  summary: 'run beside one broker node: apply every new CRL bundle, prove enforcement (canaries), report',
  flags: {
    url: { type: 'string', value: 'URL', help: "certfleet's base URL (required)" },
    'token-file': { type: 'string', value: 'FILE', help: 'a broker-agent token for this node, re-read at every request (required)' },
    node: { type: 'string', value: 'NAME', help: "this node's name, as in the token's broker_node claim (required)" },
    'crl-file': { type: 'string', value: 'PATH', help: "the broker's crlfile (required); with --broker rabbitmq the CRL hash directory of its ssl_crl_hash_dir" },
    'ca-file': { type: 'string', value: 'PATH', help: 'the CA certificates the broker trusts for devices: every CRL must be signed by one (required)' },
    'ca-scopes-file': {
      type: 'string',
      value: 'PATH',
      help: "Mosquitto with the certfleet_acl plugin: its CA scope map (plugin_opt_ca_scopes_file), written before the CA file; default `<ca-file>.scopes` when that file exists (broker-config writes it in plugin mode). Without one, tenant-scoped CAs stay out of the CA file (acl_file mode and RabbitMQ cannot bind a certificate's CN to its CA's tenant)",
    },
    'pid-file': { type: 'string', value: 'PATH', help: "the broker's pid file: SIGHUP after each new CRL" },
    'reload-command': { type: 'string', value: 'CMD', help: 'shell command that makes the broker reload (instead of --pid-file)' },
    broker: { type: 'string', value: 'KIND', help: 'mosquitto (default) or rabbitmq', choices: BROKER_KINDS },
    'admin-url': { type: 'string', value: 'URL', help: 'to close live sessions of revoked devices: Mosquitto dynsec admin listener, or RabbitMQ management API (http://127.0.0.1:15672)' },
    'admin-username': { type: 'string', value: 'NAME', help: 'dynsec admin user (default certfleet-admin)' },
    'admin-password-file': { type: 'string', value: 'FILE', help: "the admin user's password file" },
    'admin-ca-file': { type: 'string', value: 'FILE', help: 'CA of an mqtts:// admin listener' },
    'canary-url': { type: 'string', value: 'URL', help: "the broker's device listener for the canary handshakes, e.g. mqtts://localhost:8883" },
    'canary-ca-file': { type: 'string', value: 'FILE', help: "CA of the broker's server certificate (for the canary handshakes)" },
    'state-dir': { type: 'string', value: 'DIR', help: 'where the canary certificates are kept (default: <crl-file dir>/.certfleet-agent)' },
    wait: { type: 'string', value: 'SECONDS', help: 'long-poll wait and report heartbeat (default 50, at most 120)', check: intCheck(1, 120) },
    'large-crl-bytes': { type: 'string', value: 'BYTES', help: 'a CRL bundle this large is "large" (default 4194304)', check: wholeNumberCheck },
    'large-crl-reload-interval': {
      type: 'string',
      value: 'SECONDS',
      help: 'after a large CRL, reload no sooner than this (default 10; 0: no bound); revocations meanwhile are coalesced',
      check: wholeNumberCheck,
    },
  },
  example: [
    'certfleet broker-agent --url https://certfleet.example.com --token-file /etc/certfleet/agent.token --node eu-1 \\',
    '  --crl-file /etc/mosquitto/certfleet/crl.pem --ca-file /etc/mosquitto/certfleet/device-ca.crt \\',
    '  --ca-scopes-file /etc/mosquitto/certfleet/device-ca.crt.scopes --pid-file /run/mosquitto/mosquitto.pid \\',
    '  --canary-url mqtts://localhost:8883 --canary-ca-file /etc/mosquitto/certfleet/server-ca.crt',
  ],
  notes: 'Runs until SIGINT/SIGTERM. Get the token with `certfleet token --role broker-agent --node NAME` (development) or from your identity provider (realm role broker-agent, claim broker_node).',
  async run(flags) {
    const node = required(flags, 'node');
    if (!isValidBrokerNodeName(node)) throw new UsageError('--node: letters, digits, _ and -, at most 40 characters');
    const kind = (str(flags.broker) ?? 'mosquitto') as BrokerKind;
    if (!BROKER_KINDS.includes(kind)) throw new UsageError(`--broker must be one of ${BROKER_KINDS.join(', ')}`);
    const pidFile = str(flags['pid-file']);
    const command = str(flags['reload-command']);
    // RabbitMQ (OTP ssl) reads its CRL directory at every handshake: no reload.
    if (pidFile && command) throw new UsageError('give one of --pid-file and --reload-command');
    if (kind === 'mosquitto' && !pidFile && !command) throw new UsageError('give --pid-file or --reload-command');
    const crlFile = path.resolve(required(flags, 'crl-file'));
    const caFile = required(flags, 'ca-file');
    // broker-config writes `<cafile>.scopes` only in plugin mode (the plugin reads it): found there, it is this broker's map.
    const besideCaFile = `${caFile}.scopes`; // caScopesPathFor (src/broker/ca-scopes.ts), not imported by `certfleet --help`
    const caScopesFile = str(flags['ca-scopes-file']) ?? (kind === 'mosquitto' && existsSync(besideCaFile) ? besideCaFile : undefined);
    if (str(flags['ca-scopes-file']) && kind === 'rabbitmq') throw new UsageError("--ca-scopes-file is for Mosquitto with the certfleet_acl plugin: RabbitMQ cannot bind a certificate's CN to its CA's tenant (tenant-scoped CAs stay out of its CA file)");
    const wait = Number(str(flags.wait) ?? 50);
    if (!Number.isInteger(wait) || wait < 1 || wait > 120) throw new UsageError('--wait must be 1 to 120 seconds');
    // The agent's code is loaded here, not by `certfleet --help`.
    const [{ createBrokerReloader }, { createRevokedSessions }, { crlHashDirTarget }, { createLogger }] = await Promise.all([
      import('../broker/broker-reloader.ts'),
      import('../broker/revoked-sessions.ts'),
      import('../broker/agent/crl-targets.ts'),
      import('../support/logger.ts'),
    ]);
    const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'info' });
    const adminUrl = str(flags['admin-url']);
    const rabbit = kind === 'rabbitmq' && adminUrl ? await rabbitmqAdmin(adminUrl, flags) : null;
    const sessions = rabbit ? createRevokedSessions({ kicker: rabbit, logger }) : adminUrl ? await adminSessions(adminUrl, flags, logger) : null;
    const canaryUrl = str(flags['canary-url']);
    const { createBrokerAgent } = await import('../broker/agent/broker-agent.ts');
    const agent = createBrokerAgent({
      url: required(flags, 'url'),
      tokenFile: required(flags, 'token-file'),
      node,
      kind,
      crlFile,
      ...(kind === 'rabbitmq' ? { target: crlHashDirTarget(crlFile) } : {}),
      ...(rabbit ? { prepareCanaries: async (names: string[]) => void (await Promise.all(names.map((n) => rabbit.ensureUser(n)))) } : {}),
      caFile,
      caScopesFile: caScopesFile ? path.resolve(caScopesFile) : null,
      reloader: createBrokerReloader({ pidFile, command, logger }),
      sessions,
      canary: canaryUrl ? { url: canaryUrl, serverCaPem: await readFile(required(flags, 'canary-ca-file'), 'utf8') } : null,
      stateDir: str(flags['state-dir']) ?? path.join(path.dirname(crlFile), '.certfleet-agent'),
      logger,
      waitSeconds: wait,
      largeCrlBytes: nonNegative(flags, 'large-crl-bytes', 4 * 1024 * 1024),
      largeCrlReloadIntervalMs: nonNegative(flags, 'large-crl-reload-interval', 10) * 1000,
    });
    logger.info({ event: 'broker_agent_started', node, kind, crl_file: crlFile, session_kicking: sessions !== null, canary: canaryUrl ?? null }, `broker agent for node ${node} started`);
    const done = agent.run();
    await Promise.race([
      done,
      new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      }),
    ]);
    await agent.stop();
    return 0;
  },
};

async function rabbitmqAdmin(url: string, flags: Flags) {
  const { createRabbitmqAdmin } = await import('../broker/rabbitmq-admin.ts');
  const password = (await readFile(required(flags, 'admin-password-file'), 'utf8')).trim();
  return createRabbitmqAdmin({ url, username: str(flags['admin-username']) ?? 'certfleet-admin', password });
}

async function adminSessions(url: string, flags: Flags, logger: Logger) {
  const { createRevokedSessions } = await import('../broker/revoked-sessions.ts');
  const passwordFile = required(flags, 'admin-password-file');
  const caFile = str(flags['admin-ca-file']);
  return createRevokedSessions({
    logger,
    kicker: {
      async kick(commonName) {
        const { createSessionKicker } = await import('../broker/session-kicker.ts');
        const password = (await readFile(passwordFile, 'utf8')).trim();
        const ca = caFile ? await readFile(caFile) : undefined;
        return createSessionKicker({ url, username: str(flags['admin-username']) ?? 'certfleet-admin', password, ca }).kick(commonName);
      },
    },
  });
}

export const brokersGroup: GroupSpec = {
  summary: 'broker nodes and their agents',
  subcommands: {
    list: {
      summary: 'broker nodes: CRL applied, last enforcement check, lag (operator)',
      flags: { ...clientFlags },
      example: 'certfleet brokers list --json',
      async run(flags) {
        const api = await clientFromFlags(flags);
        const res = await api.get<{ nodes: BrokerNodeView[]; latest_crl_number: string | null }>('/api/v1/operator/broker-nodes');
        const rows = res.nodes.map((n) => [
          n.node,
          n.kind,
          n.state,
          n.crl_number,
          n.applied_at ? relativeTime(n.applied_at) : null,
          n.last_check_result ? `${n.last_check_result} ${relativeTime(n.last_check_at!)}` : null,
          n.lag_seconds,
          relativeTime(n.reported_at),
        ]);
        const human = `${table(['node', 'kind', 'state', 'crl', 'applied', 'check', 'lag_s', 'reported'], rows)}\nlatest CRL: ${res.latest_crl_number ?? 'none'}`;
        print(flags, human, res);
        return 0;
      },
    },
  },
};
