/**
 * `certfleet broker-config --out DIR [--port 8883] [--host localhost]`: everything a Mosquitto 2.x
 * needs for device mutual TLS (src/broker/write-broker-config.ts), with the Device CA and the CRL
 * path of this certfleet configuration. When the CRL file does not exist yet an initial CRL is
 * published first (Mosquitto refuses to start without it). With the dynamic security plugin
 * (default when it is installed; `--no-kick` turns it off) certfleet can also close the live
 * sessions of revoked certificates: the output says which variables to give certfleet for that.
 */
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Config } from '../config.ts';
import { BROKER_KINDS } from '../app/broker-nodes.ts';
import { systemClock } from '../domain/clock.ts';
import { loadCaForConfig } from '../composition/load-ca.ts';
import { DEFAULT_MQTTS_PORT } from '../broker/mosquitto-config.ts';
import { ACL_PLUGIN_CANDIDATES, ADMIN_PASSWORD_FILE } from '../broker/broker-files.ts';
import { DYNSEC_PLUGIN_CANDIDATES } from '../broker/dynamic-security.ts';
import { writeBrokerConfig, type AclPluginOptions, type BrokerAclOptions, type DynamicSecurityOptions } from '../broker/write-broker-config.ts';
import { openStorage } from '../composition/open-storage.ts';
import { RESERVED_IDS, RESERVED_TENANT_ID, isReservedId } from '../domain/identifiers.ts';
import { allAclDevices, allBrokerGrants } from '../storage/repos/broker-acl-repo.ts';
import { createClaimStore } from '../storage/repos/claim-repo.ts';
import type { SuppliedServerCertificate } from '../broker/server-pki.ts';
import { UsageError, type Flags } from './spec.ts';
import { print } from './output.ts';
import { publishInitialCrl } from './initial-crl.ts';

function port(flags: Flags, name: string, fallback: number): number {
  const raw = flags[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new UsageError(`--${name} must be a TCP port (got "${String(raw)}")`);
  return n;
}

/** The admin password: from --admin-password-file (created 0600 when missing), else writeBrokerConfig's default. */
async function adminPassword(file: string | undefined): Promise<{ password?: string; file?: string; created: boolean }> {
  if (!file) return { created: false };
  const path = resolve(file);
  if (existsSync(path)) {
    const password = (await readFile(path, 'utf8')).trim();
    if (!password) throw new Error(`--admin-password-file ${path} is empty`);
    return { password, file: path, created: false };
  }
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const password = randomBytes(24).toString('base64url');
  await writeFile(path, `${password}\n`, { mode: 0o600, flag: 'wx' });
  await chmod(path, 0o600);
  return { password, file: path, created: true };
}

/** --server-cert/--server-key/--server-ca: all three or none. */
async function suppliedServerCertificate(flags: Flags): Promise<SuppliedServerCertificate | undefined> {
  const names = ['server-cert', 'server-key', 'server-ca'] as const;
  const given = names.filter((n) => flags[n] !== undefined);
  if (given.length === 0) return undefined;
  if (given.length !== names.length) throw new UsageError('--server-cert, --server-key and --server-ca go together');
  const [certPem, keyPem, caPem] = await Promise.all(names.map((n) => readFile(resolve(String(flags[n])), 'utf8')));
  return { certPem, keyPem, caPem };
}

function serverCertDays(flags: Flags): number | undefined {
  const raw = flags['server-cert-days'];
  if (raw === undefined) return undefined;
  const days = Number(raw);
  if (!Number.isInteger(days)) throw new UsageError(`--server-cert-days must be a whole number of days (got "${String(raw)}")`);
  return days;
}

/** The registered devices and grants, for the first acl_file; reserved ids are reported. */
async function aclFromDatabase(config: Config, options: { permissive: boolean; path?: string }, lines: string[]): Promise<BrokerAclOptions> {
  try {
    const storage = await openStorage(config);
    try {
      const { devices, grants } = await storage.db.asOperator(async (tx) => ({ devices: await allAclDevices(tx), grants: await allBrokerGrants(tx) }));
      for (const d of devices.filter((d) => d.tenantId !== RESERVED_TENANT_ID && (isReservedId(d.tenantId) || isReservedId(d.deviceId)))) {
        lines.push(`warning: device "${d.tenantId}/${d.deviceId}" uses a reserved id (${RESERVED_IDS.join(', ')}): it stays confined to its own topics, but re-register it under another id`);
      }
      return { devices, grants, permissive: options.permissive, path: options.path };
    } finally {
      await storage.close();
    }
  } catch (error) {
    lines.push(`note: could not read the registered devices (${(error as Error).message}); the acl_file lists none until certfleet starts and rewrites it`);
    return { permissive: options.permissive, keepExisting: true, path: options.path };
  }
}

/**
 * Plugin mode (certfleet_acl.so, cost independent of the fleet) when --acl-plugin is given or the
 * plugin is installed where the broker looks; acl_file mode with --no-acl-plugin, --permissive-acl,
 * or when it is not found.
 */
function chooseAclPlugin(flags: Flags, permissive: boolean, lines: string[]): AclPluginOptions | undefined {
  const explicit = flags['acl-plugin'] === undefined ? undefined : String(flags['acl-plugin']);
  const grantsPath = flags['grants-file'] === undefined ? undefined : resolve(String(flags['grants-file']));
  if (explicit !== undefined) return { pluginPath: explicit, grantsPath };
  if (flags['no-acl-plugin'] || permissive) return undefined;
  const found = ACL_PLUGIN_CANDIDATES.find((p) => existsSync(p));
  if (found) return { pluginPath: found, grantsPath };
  lines.push(
    'note: the certfleet_acl broker plugin is not installed: writing an acl_file with one block per registered device ' +
      '(Mosquitto 2.0 parses it in time quadratic in the devices: see the README, Broker; pass --acl-plugin PATH if the broker has the plugin)',
  );
  return undefined;
}

/** --provisioning-port: the claim CAs registered now (certfleet keeps the file afterwards). */
async function provisioningOptions(
  config: Config,
  flags: Flags,
  aclPlugin: AclPluginOptions | undefined,
  dynamicSecurity: DynamicSecurityOptions | undefined,
  devicePort: number,
  lines: string[],
): Promise<{ port: number; claimCaPems: string[] }> {
  if (!aclPlugin) throw new UsageError('--provisioning-port needs the certfleet_acl plugin (--acl-plugin PATH): it knows claim clients by their certificate, never by their CN');
  if (!dynamicSecurity) throw new UsageError('--provisioning-port needs the dynamic security plugin (certfleet answers as its admin): drop --no-kick');
  const provisioningPort = port(flags, 'provisioning-port', devicePort + 3);
  let claimCaPems: string[] = [];
  try {
    const storage = await openStorage(config);
    try {
      claimCaPems = await createClaimStore(storage.db).allClaimCaPems();
    } finally {
      await storage.close();
    }
  } catch (error) {
    lines.push(`note: could not read the claim CAs (${(error as Error).message}); certfleet writes them into the provisioning listener's capath when it starts (BROKER_CLAIM_CA_PATH)`);
  }
  return { port: provisioningPort, claimCaPems };
}

/** Flags that exclude or need each other: usage errors (exit 2), found before anything is created or written. */
function checkFlagCombinations(flags: Flags): void {
  const permissive = Boolean(flags['permissive-acl']);
  if (flags['acl-plugin'] !== undefined && flags['no-acl-plugin']) throw new UsageError('--acl-plugin and --no-acl-plugin exclude each other');
  if (flags['acl-plugin'] !== undefined && permissive) throw new UsageError('--permissive-acl exists only in acl_file mode: drop --acl-plugin (and add --no-acl-plugin)');
  if (permissive && flags['mqtt-renewal']) {
    throw new UsageError('--permissive-acl and --mqtt-renewal exclude each other: --permissive-acl lets every device reach every topic, renewal topics included');
  }
  if (flags['recovery-port'] !== undefined && !flags['mqtt-renewal']) throw new UsageError('--recovery-port needs --mqtt-renewal (certfleet answers recovery requests with the MQTT renewal responder)');
  if (flags['mqtt-renewal'] && flags['no-kick']) throw new UsageError('--mqtt-renewal needs the dynamic security plugin (certfleet answers as its admin user): drop --no-kick');
}

export async function brokerConfigCommand(flags: Flags, config: Config): Promise<number> {
  if (!flags.out) throw new UsageError('--out DIR is required');
  const outDir = resolve(String(flags.out));
  const host = (flags.host as string | undefined) ?? 'localhost';
  const devicePort = port(flags, 'port', DEFAULT_MQTTS_PORT);
  const broker = (flags.broker as string | undefined) ?? 'mosquitto';
  if (!(BROKER_KINDS as readonly string[]).includes(broker)) throw new UsageError(`--broker must be one of ${BROKER_KINDS.join(', ')} (got "${broker}")`);
  // RabbitMQ closes connections through its management API: no Mosquitto dynsec plugin
  if (broker === 'rabbitmq') flags = { ...flags, 'no-kick': true };
  checkFlagCombinations(flags);

  // As `serve` does: the data dir exists (default mode) before the development CA is made in it.
  if (!config.productionMode) await mkdir(config.dataDir, { recursive: true });
  const loaded = await loadCaForConfig(config, systemClock);
  if (!loaded.ca) throw new Error(loaded.problem ?? 'no Device CA');
  const lines: string[] = [];
  if (loaded.created) lines.push(`created a development Device CA: ${config.caCertPath}`);

  // Mosquitto does not start without its crlfile: publish one first (numbered like every later one).
  const crl = existsSync(config.crlOutputPath) ? null : await publishInitialCrl(config, loaded.ca);
  if (crl) lines.push(`wrote the initial CRL ${config.crlOutputPath} (${crl})`);

  const permissive = Boolean(flags['permissive-acl']);
  if (permissive) lines.push('warning: --permissive-acl: every device may publish and subscribe to every topic of every tenant (pattern readwrite #)');
  const aclPath = flags['acl-file'] === undefined ? undefined : resolve(String(flags['acl-file']));
  const acl = await aclFromDatabase(config, { permissive, path: aclPath }, lines);
  const aclPlugin = broker === 'mosquitto' ? chooseAclPlugin(flags, permissive, lines) : undefined;

  let dynamicSecurity: DynamicSecurityOptions | undefined;
  let passwordFile: string | undefined;
  if (!flags['no-kick']) {
    const pluginPath = flags['dynsec-plugin'] as string | undefined;
    if (pluginPath || DYNSEC_PLUGIN_CANDIDATES.some((p) => existsSync(p))) {
      const admin = await adminPassword(flags['admin-password-file'] as string | undefined);
      if (admin.created) lines.push(`wrote ${admin.file} (0600): generated dynsec admin password`);
      passwordFile = admin.file;
      dynamicSecurity = {
        renewalTopics: Boolean(flags['mqtt-renewal']),
        adminPassword: admin.password,
        pluginPath,
        adminHost: flags['admin-host'] as string | undefined,
        adminPort: flags['admin-port'] === undefined ? undefined : port(flags, 'admin-port', devicePort + 1),
        ...(flags['recovery-port'] === undefined ? {} : { recovery: { port: port(flags, 'recovery-port', devicePort + 2) } }),
      };
    } else if (flags['mqtt-renewal']) {
      throw new Error('--mqtt-renewal needs the Mosquitto dynamic security plugin (not found; pass --dynsec-plugin PATH)');
    } else {
      lines.push(
        'note: the Mosquitto dynamic security plugin is not installed: revoked devices are refused at their next connect, ' +
          'but live sessions stay open (pass --dynsec-plugin PATH if the broker runs elsewhere)',
      );
    }
  }

  const provisioning = flags['provisioning-port'] === undefined ? undefined : await provisioningOptions(config, flags, aclPlugin, dynamicSecurity, devicePort, lines);

  const result = await writeBrokerConfig({
    outDir,
    host,
    port: devicePort,
    bindAddress: flags.bind as string | undefined,
    deviceCaCertPem: loaded.ca.certPem,
    crlPath: config.crlOutputPath,
    crlLayout: (flags['crl-layout'] as 'capath' | 'crlfile' | undefined) ?? 'capath',
    pidFile: flags['pid-file'] as string | undefined,
    renewServerCertificate: Boolean(flags.renew),
    serverCaKeyDir: flags['server-ca-key-dir'] as string | undefined,
    serverCertDays: serverCertDays(flags),
    serverCertificate: await suppliedServerCertificate(flags),
    brokerUser: flags['broker-user'] as string | undefined,
    dynamicSecurity,
    acl,
    aclPlugin,
    provisioning,
  });
  lines.push(...result.lines);
  const defaultPasswordFile = join(outDir, ADMIN_PASSWORD_FILE);
  passwordFile ??= result.files.adminPasswordFile ?? (result.dynamicSecurity && existsSync(defaultPasswordFile) ? defaultPasswordFile : undefined);

  const env: Record<string, string> = {
    CRL_OUTPUT_PATH: config.crlOutputPath,
    BROKER_PID_FILE: result.files.pidFile,
    // the broker's cafile: certfleet keeps every staged, active and retiring CA in it (after its CRL is in CRL_OUTPUT_PATH)
    BROKER_CA_PATH: result.files.deviceCaCert,
  };
  if (result.files.aclFile) env.BROKER_ACL_PATH = result.files.aclFile;
  if (result.files.grantsFile) env.BROKER_GRANTS_PATH = result.files.grantsFile;
  if (permissive) env.BROKER_ACL_PERMISSIVE = 'true';
  if (result.dynamicSecurity) {
    env.BROKER_ADMIN_URL = result.dynamicSecurity.url;
    env.BROKER_ADMIN_USERNAME = result.dynamicSecurity.adminUsername;
    if (passwordFile) env.BROKER_ADMIN_PASSWORD_FILE = passwordFile;
    if (result.dynamicSecurity.adminTls) env.BROKER_ADMIN_CA_FILE = result.files.serverCaCert;
    if (flags['mqtt-renewal']) env.MQTT_RENEWAL = 'true';
  }
  if (result.provisioning) {
    // the provisioning listener's capath: certfleet keeps every tenant's claim CAs in it
    env.BROKER_CLAIM_CA_PATH = result.provisioning.claimCaDir;
    env.MQTT_PROVISIONING = 'true';
    lines.push(
      `Devices with a claim certificate provision over mqtts://${host}:${result.provisioning.port} with their claim certificate, logged in as certfleet-claim:<sha256 of the claim certificate> (docs/device-provisioning.md); EST simpleenroll works too.`,
    );
  }
  if (result.recovery) {
    lines.push(
      `Devices whose certificate expired recover over mqtts://${host}:${result.recovery.port} as "${result.recovery.username}" with the password in ${result.recovery.passwordFile} (docs/device-renewal.md); EST always works too.`,
    );
  }
  if (broker === 'rabbitmq') {
    const { writeRabbitmqFiles } = await import('./broker-config-rabbitmq.ts');
    const managementPort = port(flags, 'admin-port', 15672);
    const rabbit = await writeRabbitmqFiles({
      outDir,
      mqttTlsPort: devicePort,
      managementPort,
      serverCert: result.files.serverCert,
      serverKey: result.files.serverKey,
      deviceCaCert: result.files.deviceCaCert,
      crlOutputPath: config.crlOutputPath,
    });
    lines.push(...rabbit.lines);
    const agent =
      `certfleet broker-agent --broker rabbitmq --url URL --token-file FILE --node NAME --crl-file ${rabbit.files.crlDir} ` +
      `--ca-file ${result.files.deviceCaCert} --admin-url ${rabbit.files.managementUrl} --admin-password-file ${rabbit.files.adminPasswordFile} ` +
      `--canary-url mqtts://${host}:${devicePort} --canary-ca-file ${result.files.combinedCa}`;
    const start = `RABBITMQ_CONFIG_FILE=${rabbit.files.dir}/rabbitmq RABBITMQ_ADVANCED_CONFIG_FILE=${rabbit.files.advanced} RABBITMQ_ENABLED_PLUGINS_FILE=${rabbit.files.enabledPlugins} rabbitmq-server`;
    // certfleet (serve or worker) keeps the node's device users and topic permissions
    const rabbitEnv: Record<string, string> = {
      CRL_OUTPUT_PATH: config.crlOutputPath,
      BROKER_RABBITMQ_ADMIN_URL: rabbit.files.managementUrl,
      BROKER_RABBITMQ_ADMIN_USERNAME: rabbit.files.adminUsername,
      BROKER_RABBITMQ_ADMIN_PASSWORD_FILE: rabbit.files.adminPasswordFile,
      BROKER_RABBITMQ_VHOST: '/',
    };
    const rabbitHuman = [
      ...lines,
      '',
      `Start the broker:  ${start}`,
      `Run its agent:  ${agent}`,
      'Run certfleet (worker or serve) with (it creates a user per registered device with its topic permissions):',
      ...Object.entries(rabbitEnv).map(([k, v]) => `  ${k}=${v}`),
      'Topics: each device its own tenant/<tenant>/device/<device>/# plus its tenant\'s broker grants; ids or grants containing "." get nothing on RabbitMQ (see the README, broker fleet).',
    ];
    print(flags, rabbitHuman.join('\n'), {
      files: { ...result.files, rabbitmq: rabbit.files },
      host: result.host,
      port: result.port,
      broker: 'rabbitmq',
      actions: lines,
      start_command: start,
      agent_command: agent,
      env: rabbitEnv,
    });
    return 0;
  }
  const human = [
    ...lines,
    '',
    `Start the broker:  mosquitto -c ${result.files.config}`,
    'Run certfleet (worker or serve) with:',
    ...Object.entries(env).map(([k, v]) => `  ${k}=${v}`),
    result.dynamicSecurity
      ? `Revoked certificates: refused at the next TLS handshake after the automatic reload, and their live sessions closed through the dynsec admin "${result.dynamicSecurity.adminUsername}".`
      : 'Revoked certificates: refused at the next TLS handshake after the automatic reload; live sessions stay open (no dynamic security plugin).',
    result.files.grantsFile
      ? `Topics: each device its own tenant/<tenant>/device/<device>/# plus its tenant's broker grants (default deny), decided by the certfleet_acl plugin from the certificate CN; certfleet rewrites ${result.files.grantsFile} and reloads the broker only when grants change.`
      : `Topics: each device its own tenant/<tenant>/device/<device>/# plus its tenant's broker grants (default deny); certfleet rewrites ${result.files.aclFile} and reloads the broker when devices are registered.`,
    'Devices connect with:',
    `  mosquitto_pub --cafile ${result.files.combinedCa} --cert device.crt --key device.key -h ${host} -p ${devicePort} -t TOPIC -m MESSAGE`,
  ].join('\n');
  print(flags, human, {
    files: result.files,
    host: result.host,
    port: result.port,
    dynamic_security: result.dynamicSecurity ?? null,
    recovery: result.recovery ?? null,
    provisioning: result.provisioning ?? null,
    env,
    actions: lines,
    start_command: `mosquitto -c ${result.files.config}`,
  });
  return 0;
}
