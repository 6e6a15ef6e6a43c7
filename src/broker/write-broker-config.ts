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
import { plural } from '../domain/wording.ts';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { exists, keepPrevious, writeFileAtomic } from '../support/atomic-file.ts';
import { allows, checkAncestors, ensureTraversable, giveToBrokerGroup, lookupAccount, type OwnershipContext } from './broker-file-ownership.ts';
import { RESERVED_TENANT_ID } from '../domain/identifiers.ts';
import { X509Certificate } from 'node:crypto';
import { crlHashDirFor, syncCrlHashLinks } from './crl-hash-links.ts';
import { renderCrlPlaceholder } from './crl-placeholder.ts';
import { subjectHash } from '../pki/subject-hash.ts';
import { CRL_PLACEHOLDER_FILE, CLAIM_CA_DIR, ACL_FILE, GRANTS_FILE, COMBINED_CA_FILE, CONFIG_FILE, DEVICE_CA_FILE, RENDER_OPTIONS_FILE, SERVER_CA_FILE, SERVER_CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE } from './broker-files.ts';
import { writeDynamicSecurityFiles } from './dynamic-security.ts';
import { caScopesPathFor, renderCaScopes } from './ca-scopes.ts';
import { writeClaimCaDirectory } from './claim-ca-file.ts';
import { RECOVERY_USERNAME } from '../renewal/renewal-topics.ts';
import { DEFAULT_MQTTS_PORT, type MosquittoConfigOptions, renderAclFile, renderGrantsFile, renderMosquittoConfig } from './mosquitto-config.ts';
import type { BrokerConfigFiles, BrokerConfigResult, WriteBrokerConfigOptions } from './broker-config-types.ts';
import {
  MAX_SERVER_CERT_DAYS,
  type ServerPki,
  checkServerCertDays,
  checkSuppliedServerCertificate,
  generateServerCa,
  issueServerCertificate,
  loadServerCa,
  normalizeCaPem,
  reusableServerPki,
  validateHost,
} from './server-pki.ts';

export type { AclPluginOptions, BrokerConfigFiles, BrokerConfigResult, BrokerAclOptions, DynamicSecurityOptions, WriteBrokerConfigOptions } from './broker-config-types.ts';

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
  if (options.aclPlugin) {
    files.grantsFile = path.resolve(options.aclPlugin.grantsPath ?? path.join(outDir, GRANTS_FILE));
    files.caScopes = caScopesPathFor(files.deviceCaCert);
  }
  else files.aclFile = path.resolve(options.acl?.path ?? path.join(outDir, ACL_FILE));

  const pki = await serverPki(options, { outDir, host, now, files, lines });
  await giveToBrokerGroup(ctx, files.serverKey, 0o640, 'server private key, readable by the broker, never world-readable');
  if (files.caScopes) {
    // Before the cafile (the map never lags it): the configured Device CA or CAs, global scope.
    const certs = deviceCa.pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    await writeFileAtomic(files.caScopes, renderCaScopes(certs.map((certPem) => ({ certPem, tenantId: null }))), 0o644);
    lines.push(`wrote ${files.caScopes}: the scope of each CA in the cafile (certfleet_acl binds a certificate's CN to it; certfleet rewrites it with the cafile)`);
  }
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
  const crlLayout = options.crlLayout ?? 'capath';
  const hashDir = crlHashDirFor(crlPath);
  if (crlLayout === 'capath') {
    // The placeholder crlfile (kept when there: it never changes) and the hash folder with a link per configured CA.
    files.crlPlaceholder = path.join(outDir, CRL_PLACEHOLDER_FILE);
    files.crlHashDir = hashDir;
    if (!(await exists(files.crlPlaceholder))) await writeFileAtomic(files.crlPlaceholder, renderCrlPlaceholder(now), 0o644);
    const caCerts = deviceCa.pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    const hashes = caCerts.map((pem) => subjectHash(new X509Certificate(pem).raw));
    // Other links (CAs certfleet added since) stay: certfleet keeps the folder (src/crl/broker-trust-files.ts).
    await syncCrlHashLinks(hashDir, crlPath, hashes, { prune: false });
    await ensureTraversable(ctx, hashDir, 1, `user ${brokerUser} looks the CRLs up there at the first handshake after each reload`);
    lines.push(
      `wrote ${hashDir}/: <CA subject hash>.r0 → ${path.basename(crlPath)} (${hashes.join(', ')}), the device listener's capath; its crlfile is the placeholder ${files.crlPlaceholder} ` +
        '(no CA\'s: Mosquitto then rebuilds the TLS context at every reload and loads the CRL once, at the first handshake; certfleet keeps the links when CAs change)',
    );
  } else if (await exists(hashDir)) {
    // Back to the single crlfile: certfleet stops keeping the folder once it is gone.
    await rm(hashDir, { recursive: true, force: true });
    lines.push(`removed ${hashDir}/: --crl-layout crlfile (the device listener reads ${crlPath} itself)`);
  }

  // Optional: dynamic security plugin for kicking live sessions.
  const dynsec = options.dynamicSecurity
    ? await writeDynamicSecurityFiles(options.dynamicSecurity, { outDir, port, files, ctx, lines })
    : undefined;

  const adminUsername = dynsec?.result.adminUsername ?? null;
  const provisioning = options.provisioning ? await writeClaimCaDir(options, outDir, files, lines) : undefined;
  if (files.grantsFile) await writeGrantsFile(options, files.grantsFile, ctx);
  if (files.aclFile) await writeAclFile(options, files.aclFile, adminUsername, ctx);

  const renderOptions: MosquittoConfigOptions = {
    bindAddress: options.bindAddress ?? host,
    port,
    deviceCaFile: files.deviceCaCert,
    certFile: files.serverCert,
    keyFile: files.serverKey,
    crlFile: files.crlPlaceholder ?? crlPath,
    ...(files.crlHashDir ? { crlHashDir: files.crlHashDir } : {}),
    pidFile,
    logDest: options.logDest,
    logTypes: options.logTypes,
    tlsVersion: options.tlsVersion,
    aclFile: files.aclFile,
    dynamicSecurity: dynsec?.render,
    aclPlugin:
      options.aclPlugin && files.grantsFile
        ? {
            pluginPath: options.aclPlugin.pluginPath,
            grantsFile: files.grantsFile,
            adminUsername,
            renewalTopics: options.dynamicSecurity?.renewalTopics ?? false,
            reservedTenant: RESERVED_TENANT_ID,
            caScopesFile: files.caScopes,
          }
        : undefined,
    ...(options.dynamicSecurity?.recovery ? { recovery: { port: options.dynamicSecurity.recovery.port, bindAddress: options.dynamicSecurity.recovery.bindAddress } } : {}),
    ...(provisioning && options.provisioning ? { provisioning: { port: options.provisioning.port, bindAddress: options.provisioning.bindAddress, claimCaDir: provisioning.claimCaDir } } : {}),
  };
  await writeFileAtomic(files.config, renderMosquittoConfig(renderOptions), 0o600);
  await giveToBrokerGroup(ctx, files.config, 0o640, 're-read on every reload as the broker user');
  lines.push(`wrote ${files.config}: TLS listener ${renderOptions.bindAddress}:${port}, require_certificate, ${renderOptions.aclPlugin?.caScopesFile ? 'certificate login by certfleet_acl (CN as username, checked at CONNECT)' : 'use_identity_as_username'}, ${files.crlHashDir ? 'CRLs from capath (placeholder crlfile)' : 'crlfile'}`);
  await writeFileAtomic(files.renderOptions, `${JSON.stringify(renderOptions, null, 2)}\n`, 0o644);

  const recovery = options.dynamicSecurity?.recovery && files.recoveryPasswordFile
    ? { port: options.dynamicSecurity.recovery.port, username: RECOVERY_USERNAME, passwordFile: files.recoveryPasswordFile }
    : undefined;
  if (recovery) lines.push(`recovery listener ${renderOptions.bindAddress}:${recovery.port}: server TLS, login "${recovery.username}" (password in ${recovery.passwordFile})`);
  if (provisioning) {
    lines.push(`provisioning listener ${renderOptions.bindAddress}:${options.provisioning!.port}: claim certificates of the tenants' claim CAs (capath ${provisioning.claimCaDir}), login certfleet-claim:<sha256 of the claim certificate>`);
  }
  return { lines, files, host, port, renderOptions, dynamicSecurity: dynsec?.result, ...(recovery ? { recovery } : {}), ...(provisioning && options.provisioning ? { provisioning: { port: options.provisioning.port, ...provisioning } } : {}) };
}

/** The provisioning listener's capath: the tenants' claim CAs (empty while there are none: the listener admits no one). */
async function writeClaimCaDir(options: WriteBrokerConfigOptions, outDir: string, files: BrokerConfigFiles, lines: string[]): Promise<{ claimCaDir: string; claimCas: number }> {
  if (!options.aclPlugin) throw new TypeError('MQTT provisioning needs the certfleet_acl plugin (--acl-plugin): it knows claim clients by their certificate, not by their CN');
  if (!options.dynamicSecurity) throw new TypeError('MQTT provisioning needs the dynamic security plugin: certfleet answers as its admin');
  const dir = path.join(outDir, CLAIM_CA_DIR);
  const written = await writeClaimCaDirectory(dir, options.provisioning!.claimCaPems);
  files.claimCaDir = dir;
  lines.push(
    `wrote ${dir}/: ${written.claimCas === 0 ? 'no claim CA registered yet (the provisioning listener admits no one until one is)' : plural(written.claimCas, 'claim CA')}, one <subject hash>.<n> file each; certfleet keeps it when claim CAs change (BROKER_CLAIM_CA_PATH), read at each handshake (no reload)`,
  );
  return { claimCaDir: dir, claimCas: written.claimCas };
}

/** The ACL plugin's grants file (no device in it): readable by the broker user. */
async function writeGrantsFile(options: WriteBrokerConfigOptions, file: string, ctx: OwnershipContext): Promise<void> {
  if (options.acl?.permissive) throw new TypeError('a permissive ACL (pattern readwrite #) exists only in acl_file mode: drop the ACL plugin');
  if (options.acl?.keepExisting && (await exists(file))) {
    ctx.lines.push(`kept ${file}: the tenant grants could not be read; certfleet rewrites it when it starts (BROKER_GRANTS_PATH)`);
    return;
  }
  const rendered = renderGrantsFile(options.acl?.grants);
  await mkdir(path.dirname(file), { recursive: true, mode: 0o755 });
  await writeFileAtomic(file, rendered.text, 0o600);
  ctx.lines.push(
    `wrote ${file}: ${plural(rendered.grants, 'tenant grant')} for the certfleet_acl plugin (${options.aclPlugin?.pluginPath}); ` +
      'each device gets tenant/<tenant>/device/<device>/# and its tenant\'s grants by construction (no per-device rule, no reload per registration)' +
      (options.dynamicSecurity?.renewalTopics ? '; every device its own renewal topics' : ''),
  );
  for (const t of rendered.skipped) ctx.lines.push(`warning: the grants of tenant "${t}" are invalid and left out`);
  await giveToBrokerGroup(ctx, file, 0o640, 're-read on every reload as the broker user');
}

/** The acl_file with the devices known now (certfleet rewrites it afterwards): readable by the broker user. */
async function writeAclFile(options: WriteBrokerConfigOptions, file: string, adminUsername: string | null, ctx: OwnershipContext): Promise<void> {
  const renewalTopics = options.dynamicSecurity?.renewalTopics ?? false;
  if (options.acl?.keepExisting && (await exists(file))) {
    ctx.lines.push(`kept ${file}: the registered devices could not be read; certfleet rewrites it when it starts (BROKER_ACL_PATH)`);
    return;
  }
  const acl = renderAclFile({ adminUsername, renewalTopics, devices: options.acl?.devices, grants: options.acl?.grants, permissive: options.acl?.permissive });
  await mkdir(path.dirname(file), { recursive: true, mode: 0o755 });
  await writeFileAtomic(file, acl.text, 0o600);
  ctx.lines.push(
    `wrote ${file}: ${options.acl?.permissive ? 'PERMISSIVE (pattern readwrite #: tenants are not isolated)' : 'default deny'}; ` +
      `${plural(acl.devices, 'registered device')} ${acl.devices === 1 ? 'gets' : 'get'} tenant/<tenant>/device/<device>/# and their tenant's grants` +
      (renewalTopics ? '; every device its own renewal topics, answered by the admin' : '') +
      (adminUsername ? `; admin "${adminUsername}" gets $CONTROL/dynamic-security/#` : ''),
  );
  for (const id of acl.skipped) ctx.lines.push(`warning: device "${id}" has an invalid id and gets no topics`);
  await giveToBrokerGroup(ctx, file, 0o640, 're-read on every reload as the broker user');
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
  const keyDir = options.serverCaKeyDir ? path.resolve(options.serverCaKeyDir) : outDir;
  const caKeyFile = path.join(keyDir, SERVER_CA_KEY_FILE);
  if (keyDir !== outDir) await moveServerCaKey(outDir, keyDir, lines);

  if (options.serverCertificate) {
    const { pki, warnings } = checkSuppliedServerCertificate(options.serverCertificate, host, now);
    await writeServerFiles(files, pki, lines);
    lines.push(...warnings);
    if (await exists(caKeyFile)) {
      const kept = await keepPrevious(caKeyFile);
      await rm(caKeyFile);
      lines.push(`moved ${caKeyFile} to ${kept}: the server certificate is now the operator's own (the old server CA key is kept, never deleted)`);
    }
    return pki;
  }

  const current = options.renewServerCertificate ? null : await reusableServerPki(outDir, host, now);
  if (current) {
    lines.push(`kept the existing server certificate for ${host} (valid until ${current.notAfter.toISOString()}; --renew to replace it)`);
    return current;
  }
  const keptCa = await loadServerCa(outDir, keyDir);
  if (keptCa && keptCa.notAfter.getTime() > now.getTime() + days * DAY_MS) {
    const pki = await issueServerCertificate(keptCa, host, now, days);
    await writeServerFiles(files, pki, lines);
    lines.push(`issued the server certificate from the same server CA "${keptCa.subject}": devices keep their combined-ca.crt`);
    return pki;
  }
  const ca = await generateServerCa(now);
  const keptCaKey = await keepPrevious(caKeyFile, ca.keyPem);
  if (keptCaKey) lines.push(`kept the previous server CA key as ${keptCaKey}`);
  await writeFileAtomic(caKeyFile, ca.keyPem, 0o600);
  await writeFileAtomic(files.serverCaCert, ca.certPem, 0o644);
  lines.push(`wrote ${files.serverCaCert}: new server CA "${ca.subject}" (EC P-256, 10 years); its key is kept in ${caKeyFile} (0600) for renewals`);
  if (keptCa) lines.push('warning: the previous server CA expires too soon: devices need the new combined-ca.crt');
  const pki = await issueServerCertificate(ca, host, now, days);
  await writeServerFiles(files, pki, lines);
  return pki;
}

/** The server CA key out of the broker's folder: into `keyDir` (0700), never overwriting a key already there. */
async function moveServerCaKey(outDir: string, keyDir: string, lines: string[]): Promise<void> {
  await mkdir(keyDir, { recursive: true, mode: 0o700 });
  const old = path.join(outDir, SERVER_CA_KEY_FILE);
  if (!(await exists(old))) return;
  const target = path.join(keyDir, SERVER_CA_KEY_FILE);
  if (await exists(target)) throw new Error(`${old} and ${target} both exist: keep the one that signed ${SERVER_CA_FILE}, remove the other`);
  await writeFileAtomic(target, await readFile(old, 'utf8'), 0o600);
  await rm(old);
  lines.push(`moved the server CA key from ${old} to ${target}: the broker's folder no longer holds it`);
}

async function writeServerFiles(files: BrokerConfigFiles, pki: ServerPki, lines: string[]): Promise<void> {
  await writeFileAtomic(files.serverCaCert, pki.caPem, 0o644);
  await writeFileAtomic(files.serverCert, pki.certPem, 0o644);
  lines.push(`wrote ${files.serverCert}: server certificate (serverAuth, valid until ${pki.notAfter.toISOString()})`);
  const kept = await keepPrevious(files.serverKey, pki.keyPem);
  await writeFileAtomic(files.serverKey, pki.keyPem, 0o600);
  lines.push(`wrote ${files.serverKey} (server private key)${kept ? `; the previous key is kept as ${kept}` : ''}`);
}
