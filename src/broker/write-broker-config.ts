/**
 * Writes everything Mosquitto needs for device mutual TLS into one folder: a server CA and a
 * server certificate (EC P-256), the Device CA, the combined CA bundle clients use as
 * `--cafile`, mosquitto.conf, and optionally the dynamic security plugin files that let
 * certfleet disconnect live sessions of revoked certificates (docs/broker-sessions.md).
 *
 * File ownership: broker-file-ownership.ts; server certificate: server-pki.ts; dynamic
 * security: dynamic-security.ts; file names: broker-files.ts.
 */
import { DAY_MS } from '../domain/clock.ts';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { exists, writeFileAtomic } from '../support/atomic-file.ts';
import { allows, checkAncestors, ensureTraversable, giveToBrokerGroup, lookupAccount, type OwnershipContext } from './broker-file-ownership.ts';
import { COMBINED_CA_FILE, CONFIG_FILE, DEVICE_CA_FILE, RENDER_OPTIONS_FILE, SERVER_CA_FILE, SERVER_CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE } from './broker-files.ts';
import { writeDynamicSecurityFiles } from './dynamic-security.ts';
import { DEFAULT_MQTTS_PORT, type MosquittoConfigOptions, renderMosquittoConfig } from './mosquitto-config.ts';
import {
  MAX_SERVER_CERT_DAYS,
  type ServerPki,
  type SuppliedServerCertificate,
  checkServerCertDays,
  checkSuppliedServerCertificate,
  generateServerCa,
  issueServerCertificate,
  loadServerCa,
  normalizeCaPem,
  reusableServerPki,
  validateHost,
} from './server-pki.ts';

export interface DynamicSecurityOptions {
  /** Admin password; when omitted a random one is generated into `dynsec-admin.password` (0600). */
  adminPassword?: string;
  /** Default `certfleet-admin`. Must not contain `/` (device CNs always do), so no device can be it. */
  adminUsername?: string;
  /** Default 127.0.0.1. */
  adminHost?: string;
  /** Default port + 1. */
  adminPort?: number;
  /** Admin listener over TLS with the server certificate (clients then need server-ca.crt). */
  adminTls?: boolean;
  /** Default: the first mosquitto_dynamic_security.so found in the usual library folders. */
  pluginPath?: string;
  /** acl_file lines for devices; default `pattern readwrite #` (every non-`$` topic), `pattern readwrite %u/#` with renewalTopics. */
  deviceAclLines?: string[];
  /** Devices renew over MQTT (certfleet/renew/<CN>/request|response), answered by certfleet as the admin user. */
  renewalTopics?: boolean;
}

export interface WriteBrokerConfigOptions {
  outDir: string;
  /** Name devices connect to: server certificate CN/SAN. Default `localhost`. */
  host?: string;
  /** Device listener port. Default 8883. */
  port?: number;
  /** Address the listener binds to. Default: `host`. */
  bindAddress?: string;
  deviceCaCertPem: string;
  /** CRL file Mosquitto reads (`crlfile`); certfleet's CRL publisher writes it. */
  crlPath: string;
  /** Default `<outDir>/run/mosquitto.pid`. */
  pidFile?: string;
  logDest?: string[];
  logTypes?: string[];
  tlsVersion?: string;
  /** Server certificate validity, at most (and by default) 397 days. The server CA is valid 10 years. */
  serverCertDays?: number;
  /** Issue a new server certificate even if the current one is still valid (from the kept server CA when there is one). */
  renewServerCertificate?: boolean;
  /** Use the operator's own server certificate instead of certfleet's server CA. */
  serverCertificate?: SuppliedServerCertificate;
  /** The user Mosquitto switches to when started as root: a name, or `UID:GID`. Default `mosquitto`. */
  brokerUser?: string;
  dynamicSecurity?: DynamicSecurityOptions;
  now?: Date;
}

export interface BrokerConfigFiles {
  config: string;
  /** The render options, so tools (and the test harness) can re-render with other ports. */
  renderOptions: string;
  serverCaCert: string;
  serverCert: string;
  serverKey: string;
  deviceCaCert: string;
  combinedCa: string;
  crl: string;
  pidFile: string;
  dynsecConfig?: string;
  aclFile?: string;
  adminPasswordFile?: string;
}

export interface BrokerConfigResult {
  /** What was done, one human-readable line each (ownership changes, warnings). */
  lines: string[];
  files: BrokerConfigFiles;
  host: string;
  port: number;
  renderOptions: MosquittoConfigOptions;
  dynamicSecurity?: { adminUsername: string; adminHost: string; adminPort: number; adminTls: boolean; url: string };
}

export async function writeBrokerConfig(options: WriteBrokerConfigOptions): Promise<BrokerConfigResult> {
  const now = options.now ?? new Date();
  const host = options.host ?? 'localhost';
  const port = options.port ?? DEFAULT_MQTTS_PORT;
  validateHost(host);
  const outDir = path.resolve(options.outDir);
  const crlPath = path.resolve(options.crlPath);
  const pidFile = path.resolve(options.pidFile ?? path.join(outDir, 'run', 'mosquitto.pid'));
  const brokerUser = options.brokerUser ?? 'mosquitto';
  const lines: string[] = [];
  const deviceCa = normalizeCaPem(options.deviceCaCertPem);

  // Who will read the files?
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const account = isRoot ? await lookupAccount(brokerUser) : null;
  const ctx: OwnershipContext = { account, lines };
  if (!isRoot) {
    lines.push('not running as root: no ownership changes; Mosquitto started by this user runs as this user and can read the files');
  } else if (!account) {
    lines.push(`warning: running as root but user "${brokerUser}" does not exist; Mosquitto will fall back to another user that may not read the key`);
  }

  const outDirExisted = await exists(outDir);
  await mkdir(outDir, { recursive: true, mode: 0o755 });
  if (!outDirExisted) lines.push(`created ${outDir}`);
  await ensureTraversable(ctx, outDir, 1, `user ${brokerUser} reads the certificates, key and config in it`);
  await checkAncestors(ctx, outDir);

  const files: BrokerConfigFiles = {
    config: path.join(outDir, CONFIG_FILE),
    renderOptions: path.join(outDir, RENDER_OPTIONS_FILE),
    serverCaCert: path.join(outDir, SERVER_CA_FILE),
    serverCert: path.join(outDir, SERVER_CERT_FILE),
    serverKey: path.join(outDir, SERVER_KEY_FILE),
    deviceCaCert: path.join(outDir, DEVICE_CA_FILE),
    combinedCa: path.join(outDir, COMBINED_CA_FILE),
    crl: crlPath,
    pidFile,
  };

  const pki = await serverPki(options, { outDir, host, now, files, lines });
  await giveToBrokerGroup(ctx, files.serverKey, 0o640, 'server private key, readable by the broker, never world-readable');
  await writeFileAtomic(files.deviceCaCert, deviceCa.pem, 0o644);
  lines.push(`wrote ${files.deviceCaCert}: Device CA "${deviceCa.subject}" (cafile: client certificates must chain to it)`);
  await writeFileAtomic(files.combinedCa, `${pki.caPem.trimEnd()}\n${deviceCa.pem}`, 0o644);
  lines.push(`wrote ${files.combinedCa}: server CA + Device CA, what clients pass as --cafile`);

  // pid folder: Mosquitto writes (and removes) the pid file after switching to its user.
  const pidDir = path.dirname(pidFile);
  const pidDirExisted = await exists(pidDir);
  await mkdir(pidDir, { recursive: true, mode: 0o755 });
  if (!pidDirExisted) lines.push(`created ${pidDir} (pid file folder)`);
  if (account) {
    const st = await stat(pidDir);
    if (!allows(st, account, 3)) {
      await giveToBrokerGroup(ctx, pidDir, 0o770, `Mosquitto writes ${path.basename(pidFile)} there as user ${brokerUser}`);
    }
  }
  await checkAncestors(ctx, pidDir);

  // CRL: written by certfleet's CRL publisher; Mosquitto refuses to start without it.
  const crlDir = path.dirname(crlPath);
  if (await exists(crlDir)) {
    await ensureTraversable(ctx, crlDir, 1, `user ${brokerUser} re-reads ${path.basename(crlPath)} on every reload`);
    await checkAncestors(ctx, crlDir);
  } else {
    lines.push(`warning: the CRL folder ${crlDir} does not exist yet; it must be traversable by ${brokerUser}`);
  }
  if (await exists(crlPath)) {
    const crlText = await readFile(crlPath, 'latin1');
    if (!crlText.includes('-----BEGIN X509 CRL-----')) {
      lines.push(`warning: ${crlPath} is not a PEM "X509 CRL"; Mosquitto needs PEM labelled X509 CRL`);
    }
    if (account) {
      const st = await stat(crlPath);
      if (!allows(st, account, 4)) {
        await giveToBrokerGroup(ctx, crlPath, (st.mode & 0o7777) | 0o040, `user ${brokerUser} re-reads the CRL on every reload`);
      }
    }
    lines.push(`crlfile ${crlPath} exists`);
  } else {
    lines.push(
      `crlfile ${crlPath} does not exist yet: nothing written there; certfleet's CRL publisher writes it, and Mosquitto refuses to start until it exists`,
    );
  }
  if (account) {
    lines.push(
      `note: the CRL publisher replaces ${path.basename(crlPath)} by rename, so the new file must itself be readable by ${brokerUser} (a CRL is public: 0644)`,
    );
  }

  // Optional: dynamic security plugin for kicking live sessions.
  const dynsec = options.dynamicSecurity
    ? await writeDynamicSecurityFiles(options.dynamicSecurity, { outDir, port, files, ctx, lines })
    : undefined;

  const renderOptions: MosquittoConfigOptions = {
    bindAddress: options.bindAddress ?? host,
    port,
    deviceCaFile: files.deviceCaCert,
    certFile: files.serverCert,
    keyFile: files.serverKey,
    crlFile: crlPath,
    pidFile,
    logDest: options.logDest,
    logTypes: options.logTypes,
    tlsVersion: options.tlsVersion,
    dynamicSecurity: dynsec?.render,
  };
  await writeFileAtomic(files.config, renderMosquittoConfig(renderOptions), 0o600);
  await giveToBrokerGroup(ctx, files.config, 0o640, 're-read on every reload as the broker user');
  lines.push(`wrote ${files.config}: TLS listener ${renderOptions.bindAddress}:${port}, require_certificate, use_identity_as_username, crlfile`);
  await writeFileAtomic(files.renderOptions, `${JSON.stringify(renderOptions, null, 2)}\n`, 0o644);

  return { lines, files, host, port, renderOptions, dynamicSecurity: dynsec?.result };
}

interface ServerPkiContext {
  outDir: string;
  host: string;
  now: Date;
  files: BrokerConfigFiles;
  lines: string[];
}

/**
 * The broker's server certificate: the operator's own, or the current one while it fits, or a
 * new one from the kept server CA (devices' combined-ca.crt stays valid), or, when there is no
 * usable server CA, a new CA and certificate (devices then need the new combined-ca.crt).
 */
async function serverPki(options: WriteBrokerConfigOptions, ctx: ServerPkiContext): Promise<ServerPki> {
  const { outDir, host, now, files, lines } = ctx;
  const days = options.serverCertDays ?? MAX_SERVER_CERT_DAYS;
  checkServerCertDays(days);
  const caKeyFile = path.join(outDir, SERVER_CA_KEY_FILE);

  if (options.serverCertificate) {
    const { pki, warnings } = checkSuppliedServerCertificate(options.serverCertificate, host, now);
    await writeServerFiles(files, pki, lines);
    lines.push(...warnings);
    if (await exists(caKeyFile)) {
      await rm(caKeyFile);
      lines.push(`removed ${caKeyFile}: the server certificate is now the operator's own`);
    }
    return pki;
  }

  const current = options.renewServerCertificate ? null : await reusableServerPki(outDir, host, now);
  if (current) {
    lines.push(`kept the existing server certificate for ${host} (valid until ${current.notAfter.toISOString()}; --renew to replace it)`);
    return current;
  }
  const keptCa = await loadServerCa(outDir);
  if (keptCa && keptCa.notAfter.getTime() > now.getTime() + days * DAY_MS) {
    const pki = await issueServerCertificate(keptCa, host, now, days);
    await writeServerFiles(files, pki, lines);
    lines.push(`issued the server certificate from the same server CA "${keptCa.subject}": devices keep their combined-ca.crt`);
    return pki;
  }
  const ca = await generateServerCa(now);
  await writeFileAtomic(caKeyFile, ca.keyPem, 0o600);
  await writeFileAtomic(files.serverCaCert, ca.certPem, 0o644);
  lines.push(`wrote ${files.serverCaCert}: new server CA "${ca.subject}" (EC P-256, 10 years); its key is kept in ${caKeyFile} (0600) for renewals`);
  if (keptCa) lines.push('warning: the previous server CA expires too soon: devices need the new combined-ca.crt');
  const pki = await issueServerCertificate(ca, host, now, days);
  await writeServerFiles(files, pki, lines);
  return pki;
}

async function writeServerFiles(files: BrokerConfigFiles, pki: ServerPki, lines: string[]): Promise<void> {
  await writeFileAtomic(files.serverCaCert, pki.caPem, 0o644);
  await writeFileAtomic(files.serverCert, pki.certPem, 0o644);
  lines.push(`wrote ${files.serverCert}: server certificate (serverAuth, valid until ${pki.notAfter.toISOString()})`);
  await writeFileAtomic(files.serverKey, pki.keyPem, 0o600);
  lines.push(`wrote ${files.serverKey} (server private key)`);
}
