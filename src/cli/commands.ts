import { alertsGroup } from './alerts.ts';
import { brokerAgentCommand, brokersGroup } from './broker-agent.ts';
import { certsGroup } from './certs.ts';
import { crlGroup } from './crl.ts';
import { devicesGroup } from './devices.ts';
import { inspectCommand } from './inspect.ts';
import { loginCommand } from './login.ts';
import { rotateExpiringCommand } from './rotate-expiring.ts';
import { webhooksGroup } from './webhooks.ts';
import { claimCasGroup, provisioningPolicyGroup } from './claims.ts';
import { caGroup } from './ca.ts';
import { ROLES } from '../auth/roles.ts';
import { BROKER_KINDS } from '../app/broker-nodes.ts';
import { durationCheck, intCheck } from './client-flags.ts';
import type { CommandSpec, Entry, Flags, FlagSpec } from './spec.ts';

const json: Record<string, FlagSpec> = { json: { type: 'boolean', help: 'print JSON' } };

// Service commands and the configuration are imported when run, so `token` or `init-ca` do not load
// the whole service and `certfleet --help` loads only the command specs.
const loadConfig = async () => (await import('../config.ts')).loadConfig();
const serve = (parts: { api: boolean; worker: boolean }) => async (flags: Flags) => (await import('./serve.ts')).serveCommand(flags, await loadConfig(), parts);

const serviceCommands: Record<string, CommandSpec> = {
  serve: {
    summary: 'API and background worker in one process (what npm start runs)',
    flags: { ...json },
    example: 'DATABASE_URL=postgres://certfleet@db/certfleet certfleet serve',
    notes: 'Configured by the environment (PORT, DATABASE_URL, CERTFLEET_DATA_DIR, ...): see the README, section Configuration.',
    run: serve({ api: true, worker: true }),
  },
  api: {
    summary: 'the HTTP API only',
    flags: { ...json },
    example: 'PORT=8080 certfleet api',
    notes: 'Configured by the environment: see the README, section Configuration.',
    run: serve({ api: true, worker: false }),
  },
  worker: {
    summary: 'the background worker only (CRL, expiry marking, alerts, webhooks)',
    flags: {
      ...json,
      once: { type: 'boolean', help: 'run every task once, exit 1 if one failed' },
      'metrics-port': { type: 'string', value: 'PORT', help: 'serve Prometheus /metrics on this port', check: intCheck(0, 65535) },
    },
    example: 'certfleet worker --metrics-port 9464',
    run: async (flags) => (await import('./worker.ts')).workerCommand(flags, await loadConfig()),
  },
  migrate: {
    summary: 'apply database migrations (the service also applies them at start)',
    flags: { ...json },
    example: 'DATABASE_URL=postgres://certfleet@db/certfleet certfleet migrate',
    run: async (flags) => (await import('./migrate.ts')).migrateCommand(flags, await loadConfig()),
  },
  'init-ca': {
    summary: 'create a Device CA (key file mode 0600; never overwrites)',
    flags: {
      ...json,
      'key-type': { type: 'string', value: 'TYPE', help: 'ec-p256 (default) or rsa-3072', choices: ['ec-p256', 'rsa-3072'] },
      out: { type: 'string', value: 'DIR', help: 'folder for device-ca.crt and device-ca.key (default: $CERTFLEET_DATA_DIR/pki)' },
      cn: { type: 'string', value: 'NAME', help: 'the CA common name' },
    },
    example: 'certfleet init-ca --out /etc/certfleet/ca',
    run: async (flags) => (await import('./init-ca.ts')).initCaCommand(flags, await loadConfig()),
  },
  token: {
    summary: 'print a bearer token signed with the local development key',
    flags: {
      ...json,
      tenant: { type: 'string', value: 'TENANT', help: 'tenant id (required for customer and tenant-admin; operators and broker agents have none)' },
      role: { type: 'string', value: 'ROLE', help: 'customer (default), tenant-admin, operator, operator-admin or broker-agent (with --node)', choices: ROLES },
      node: { type: 'string', value: 'NAME', help: 'the broker node a broker-agent token is for' },
      ttl: { type: 'string', value: 'TTL', help: 'lifetime, e.g. 30m, 1h (default), 7d', check: durationCheck },
      sub: { type: 'string', value: 'NAME', help: 'subject recorded in the audit log (default cli:ROLE)' },
    },
    example: ['certfleet token --tenant acme --ttl 8h', 'certfleet token --role operator'],
    run: async (flags) => (await import('./token.ts')).tokenCommand(flags, await loadConfig()),
  },
  'broker-config': {
    summary: 'write a Mosquitto (or RabbitMQ) mTLS configuration (and an initial CRL)',
    flags: {
      ...json,
      out: { type: 'string', value: 'DIR', help: 'output folder (required)' },
      port: { type: 'string', value: 'PORT', help: 'TLS listener port (default 8883)', check: intCheck(1, 65535) },
      host: { type: 'string', value: 'HOST', help: 'broker host name in the server certificate (default localhost)' },
      bind: { type: 'string', value: 'ADDR', help: 'listener address (default: the host)' },
      'pid-file': { type: 'string', value: 'FILE', help: 'where Mosquitto writes its pid' },
      renew: { type: 'boolean', help: 'issue a new server certificate even if still valid' },
      'server-cert-days': { type: 'string', value: 'N', help: 'validity of the server certificate in days (at most 397, the default)', check: intCheck(1, 397) },
      'server-ca-key-dir': { type: 'string', value: 'DIR', help: "keep certfleet's server CA key here, not in --out (a folder the broker does not mount)" },
      'server-cert': { type: 'string', value: 'FILE', help: "your own PKI's server certificate (with --server-key and --server-ca)" },
      'server-key': { type: 'string', value: 'FILE', help: 'its private key' },
      'server-ca': { type: 'string', value: 'FILE', help: 'the CA that issued it' },
      'broker-user': { type: 'string', value: 'UID:GID', help: 'the account the broker runs as (e.g. in a container)' },
      'no-kick': { type: 'boolean', help: 'leave out the dynamic security plugin (no session kicking)' },
      'crl-layout': {
        type: 'string',
        value: 'LAYOUT',
        help: "Mosquitto: capath (default: a placeholder crlfile and CRL_OUTPUT_PATH.hash/<CA hash>.r0 links, the CRL loaded once per reload, at the first handshake) or crlfile (CRL_OUTPUT_PATH as the crlfile, loaded twice per reload)",
        choices: ['capath', 'crlfile'],
      },
      'mqtt-renewal': { type: 'boolean', help: 'devices renew over MQTT: per-device ACL on certfleet/renew/<CN>/request|response (needs the dynsec plugin)' },
      'acl-file': { type: 'string', value: 'PATH', help: 'where the acl_file goes (default OUT/acl); certfleet keeps it current (BROKER_ACL_PATH)' },
      'acl-plugin': { type: 'string', value: 'PATH', help: 'certfleet_acl.so as the broker sees it: topic access by construction, no per-device rule (default when installed; see the README, Broker)' },
      'no-acl-plugin': { type: 'boolean', help: 'use an acl_file with one block per registered device instead of the plugin (brokers without it; start and reload grow with the fleet)' },
      'grants-file': { type: 'string', value: 'PATH', help: "where the plugin's tenant grants file goes (default OUT/grants); certfleet keeps it current (BROKER_GRANTS_PATH)" },
      'permissive-acl': { type: 'boolean', help: 'UNSAFE: every device may use every topic (pattern readwrite #), tenants are not isolated; not with --mqtt-renewal' },
      'dynsec-plugin': { type: 'string', value: 'PATH', help: 'path of mosquitto_dynamic_security.so' },
      'admin-host': { type: 'string', value: 'HOST', help: 'dynsec admin listener address (default 127.0.0.1)' },
      'admin-port': { type: 'string', value: 'PORT', help: 'dynsec admin listener port (default: port + 1)', check: intCheck(1, 65535) },
      'admin-password-file': { type: 'string', value: 'FILE', help: 'where the admin password is kept' },
      'recovery-port': { type: 'string', value: 'PORT', help: 'recovery listener for devices whose certificate expired (server TLS, shared recovery login; needs --mqtt-renewal)', check: intCheck(1, 65535) },
      'provisioning-port': {
        type: 'string',
        value: 'PORT',
        help: "MQTT provisioning listener for devices with a claim (factory) certificate: trusts only the tenants' claim CAs (claim-cas.pem, kept by certfleet), topics certfleet/provision/<claim sha256>/...; needs the ACL plugin and the dynamic security plugin",
        check: intCheck(1, 65535),
      },
      broker: {
        type: 'string',
        value: 'KIND',
        help: 'mosquitto (default) or rabbitmq (RabbitMQ 3.10 MQTT plugin files in OUT/rabbitmq; --admin-port: management, default 15672)',
        choices: BROKER_KINDS,
      },
    },
    example: 'certfleet broker-config --out /etc/certfleet/broker --host mqtt.example.com',
    run: async (flags) => (await import('./broker-config.ts')).brokerConfigCommand(flags, await loadConfig()),
  },
};

export const commands: Record<string, Entry> = {
  ...serviceCommands,
  login: loginCommand,
  devices: devicesGroup,
  certs: certsGroup,
  crl: crlGroup,
  alerts: alertsGroup,
  'broker-agent': brokerAgentCommand,
  brokers: brokersGroup,
  inspect: inspectCommand,
  'rotate-expiring': rotateExpiringCommand,
  webhooks: webhooksGroup,
  'claim-cas': claimCasGroup,
  'provisioning-policy': provisioningPolicyGroup,
  ca: caGroup,
};
