/**
 * The optional dynamic security plugin files (dynamic-security.json, a generated admin
 * password) that let certfleet disconnect live sessions of revoked certificates
 * (docs/broker-sessions.md).
 */
import { pbkdf2, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { exists, writeFileAtomic } from '../support/atomic-file.ts';
import { giveToBrokerGroup, type OwnershipContext } from './broker-file-ownership.ts';
import { ADMIN_PASSWORD_FILE, DYNSEC_FILE, RECOVERY_PASSWORD_FILE } from './broker-files.ts';
import { RECOVERY_REQUEST_TOPIC, RECOVERY_RESPONSE_FILTER, RECOVERY_USERNAME } from '../renewal/renewal-topics.ts';
import {
  DEFAULT_ADMIN_USERNAME,
  type DynsecPasswordHash,
  type MosquittoConfigOptions,
  renderDynamicSecurityJson,
} from './mosquitto-config.ts';
import type { BrokerConfigFiles, BrokerConfigResult, DynamicSecurityOptions } from './broker-config-types.ts';

const pbkdf2Async = promisify(pbkdf2);

export const DYNSEC_PLUGIN_CANDIDATES = [
  '/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so',
  '/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so',
  '/usr/lib/arm-linux-gnueabihf/mosquitto_dynamic_security.so',
  '/usr/lib/mosquitto_dynamic_security.so',
  '/usr/lib64/mosquitto_dynamic_security.so',
  '/usr/local/lib/mosquitto_dynamic_security.so',
  '/usr/local/lib64/mosquitto_dynamic_security.so',
  '/opt/homebrew/lib/mosquitto_dynamic_security.so',
];

/** Hash a dynsec password exactly as Mosquitto 2.0 does (verified against `mosquitto_ctrl dynsec init`). */
export async function hashDynsecPassword(
  password: string,
  salt: Buffer = randomBytes(12),
  iterations = 101,
): Promise<DynsecPasswordHash> {
  const hash = await pbkdf2Async(password, salt, iterations, 64, 'sha512');
  return { password: hash.toString('base64'), salt: salt.toString('base64'), iterations };
}

/** Does a dynsec client entry hold the hash of this password? */
export async function dynsecPasswordMatches(entry: Record<string, unknown>, password: string): Promise<boolean> {
  if (typeof entry.salt !== 'string' || typeof entry.password !== 'string' || typeof entry.iterations !== 'number') return false;
  const hash = await hashDynsecPassword(password, Buffer.from(entry.salt, 'base64'), entry.iterations);
  return hash.password === entry.password;
}

export async function findDynsecPlugin(explicit: string | undefined, lines: string[]): Promise<string> {
  if (explicit) {
    // The broker may run elsewhere (another container): an explicit path is used as given.
    if (!(await exists(explicit))) lines.push(`note: ${explicit} does not exist here; it must exist where Mosquitto runs`);
    return explicit;
  }
  const candidates = DYNSEC_PLUGIN_CANDIDATES;
  for (const candidate of candidates) {
    if (await exists(candidate)) return candidate;
  }
  throw new Error(
    `broker-config: Mosquitto dynamic security plugin not found (looked in ${candidates.join(', ')}); ` +
      'install it or pass dynamicSecurity.pluginPath',
  );
}

/** Writes (or keeps) the plugin's state, ACL and admin password; returns what mosquitto.conf needs. */
export async function writeDynamicSecurityFiles(
  ds: DynamicSecurityOptions,
  at: { outDir: string; port: number; files: BrokerConfigFiles; ctx: OwnershipContext; lines: string[] },
): Promise<{ render: NonNullable<MosquittoConfigOptions['dynamicSecurity']>; result: NonNullable<BrokerConfigResult['dynamicSecurity']> }> {
  const { outDir, port, files, ctx, lines } = at;
  const adminUsername = ds.adminUsername ?? DEFAULT_ADMIN_USERNAME;
  if (!adminUsername || adminUsername.includes('/') || /\s/.test(adminUsername)) {
    throw new TypeError('broker-config: dynamicSecurity.adminUsername must be non-empty without "/" or whitespace (device CNs contain "/")');
  }
  const adminHost = ds.adminHost ?? '127.0.0.1';
  const adminPort = ds.adminPort ?? port + 1;
  const pluginPath = await findDynsecPlugin(ds.pluginPath, lines);
  files.dynsecConfig = path.join(outDir, DYNSEC_FILE);

  let password = ds.adminPassword;
  if (password === undefined && !(await exists(files.dynsecConfig))) {
    password = randomBytes(24).toString('base64url');
    files.adminPasswordFile = path.join(outDir, ADMIN_PASSWORD_FILE);
    await writeFileAtomic(files.adminPasswordFile, `${password}\n`, 0o600);
    lines.push(`wrote ${files.adminPasswordFile} (0600): generated password of dynsec admin "${adminUsername}"`);
  }
  if (!(await exists(files.dynsecConfig))) {
    const hash = await hashDynsecPassword(password as string);
    await writeFileAtomic(files.dynsecConfig, renderDynamicSecurityJson({ adminUsername, adminPasswordHash: hash }), 0o600);
    lines.push(`wrote ${files.dynsecConfig}: dynamic security state with admin "${adminUsername}" (PBKDF2-SHA512 password hash)`);
  } else if (password !== undefined) {
    const doc = JSON.parse(await readFile(files.dynsecConfig, 'utf8')) as {
      clients?: Array<Record<string, unknown>>;
    };
    doc.clients ??= [];
    const admin = doc.clients.find((c) => c.username === adminUsername);
    if (admin && (await dynsecPasswordMatches(admin, password))) {
      lines.push(`kept ${files.dynsecConfig} (the admin password is unchanged)`);
    } else {
      const hash = await hashDynsecPassword(password);
      if (admin) Object.assign(admin, hash);
      else doc.clients.push({ username: adminUsername, ...hash, roles: [{ rolename: 'admin' }] });
      await writeFileAtomic(files.dynsecConfig, `${JSON.stringify(doc, null, 2)}\n`, 0o600);
      lines.push(`updated the admin password in ${files.dynsecConfig} (takes effect when Mosquitto restarts)`);
    }
  } else {
    lines.push(`kept ${files.dynsecConfig} (existing dynamic security state)`);
  }
  if (ds.recovery) files.recoveryPasswordFile = await writeRecoveryLogin(ds.recovery, files.dynsecConfig, outDir, lines);
  // The plugin rewrites its file in place after every change (measured: owner stays root).
  await giveToBrokerGroup(ctx, files.dynsecConfig, 0o660, 'the dynsec plugin reads and rewrites it as the broker user');

  const render: NonNullable<MosquittoConfigOptions['dynamicSecurity']> = {
    pluginPath,
    configFile: files.dynsecConfig,
    adminHost,
    adminPort,
    adminTls: ds.adminTls ?? false,
  };
  const scheme = ds.adminTls ? 'mqtts' : 'mqtt';
  const urlHost = isIP(adminHost) === 6 ? `[${adminHost}]` : adminHost;
  const result: NonNullable<BrokerConfigResult['dynamicSecurity']> = {
    adminUsername,
    adminHost,
    adminPort,
    adminTls: ds.adminTls ?? false,
    url: `${scheme}://${urlHost}:${adminPort}`,
  };
  lines.push(`dynamic security plugin ${pluginPath}; admin listener ${result.url} (password login only)`);
  return { render, result };
}

/**
 * The shared recovery login in the plugin's state: a client `certfleet-recovery` whose role may
 * publish only the recovery request topic and read only recovery answers (the acl_file says the
 * same; whichever Mosquitto consults, nothing more is allowed). Its password is kept in
 * `recovery.password` (generated once); an existing client keeps working unless the password changes.
 */
async function writeRecoveryLogin(recovery: { password?: string }, dynsecFile: string, outDir: string, lines: string[]): Promise<string> {
  const passwordFile = path.join(outDir, RECOVERY_PASSWORD_FILE);
  let password = recovery.password;
  if (password === undefined && (await exists(passwordFile))) password = (await readFile(passwordFile, 'utf8')).trim();
  if (password === undefined || password === '') {
    password = randomBytes(24).toString('base64url');
    lines.push(`wrote ${passwordFile} (0600): generated password of the recovery login "${RECOVERY_USERNAME}" (devices need it to recover)`);
  }
  await writeFileAtomic(passwordFile, `${password}\n`, 0o600);
  const doc = JSON.parse(await readFile(dynsecFile, 'utf8')) as { clients?: Array<Record<string, unknown>>; roles?: Array<Record<string, unknown>> };
  doc.clients ??= [];
  doc.roles ??= [];
  // The plugin's default (defaultACLAccess) lets its clients receive every topic they subscribe
  // to: the role denies everything else explicitly (measured: without the denials the recovery
  // login read device telemetry). Higher priority is checked first.
  const allow = (acltype: string, topic: string) => ({ acltype, topic, priority: 10, allow: true });
  const deny = (acltype: string, topic: string) => ({ acltype, topic, priority: 0, allow: false });
  const role = {
    rolename: RECOVERY_USERNAME,
    textName: 'devices with an expired certificate: recovery request and answers only',
    acls: [
      allow('publishClientSend', RECOVERY_REQUEST_TOPIC),
      allow('subscribePattern', RECOVERY_RESPONSE_FILTER),
      allow('publishClientReceive', RECOVERY_RESPONSE_FILTER),
      ...['#', '$SYS/#', '$CONTROL/#'].flatMap((topic) => [deny('publishClientSend', topic), deny('publishClientReceive', topic), deny('subscribePattern', topic)]),
    ],
  };
  doc.roles = [...doc.roles.filter((r) => r.rolename !== RECOVERY_USERNAME), role];
  const existing = doc.clients.find((c) => c.username === RECOVERY_USERNAME);
  if (existing && (await dynsecPasswordMatches(existing, password))) {
    existing.roles = [{ rolename: RECOVERY_USERNAME }];
  } else {
    const hash = await hashDynsecPassword(password);
    doc.clients = [
      ...doc.clients.filter((c) => c.username !== RECOVERY_USERNAME),
      { username: RECOVERY_USERNAME, textName: 'certfleet recovery login (expired device certificates)', ...hash, roles: [{ rolename: RECOVERY_USERNAME }] },
    ];
  }
  await writeFileAtomic(dynsecFile, `${JSON.stringify(doc, null, 2)}\n`, 0o600);
  lines.push(`recovery login "${RECOVERY_USERNAME}" in ${dynsecFile} (takes effect when Mosquitto (re)starts)`);
  return passwordFile;
}
