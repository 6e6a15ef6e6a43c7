/**
 * Writes everything Mosquitto needs for device mutual TLS into one folder: a server CA and a
 * server certificate (EC P-256), the Device CA, the combined CA bundle clients use as
 * `--cafile`, mosquitto.conf, and optionally the dynamic security plugin files that let
 * certfleet disconnect live sessions of revoked certificates (docs/broker-sessions.md).
 *
 * Started as root, Mosquitto 2.0 switches to the `mosquitto` user before it writes its pid
 * file and before every reload (SIGHUP), when it re-reads the config, the certificates, the key
 * and the CRL. So when we run as root and that user exists, the files it reads are given to its
 * group (keys 0640, never world-readable) and the folders on the way are made traversable.
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import {
  X509Certificate as NodeX509Certificate,
  createPrivateKey,
  pbkdf2,
  randomBytes,
  webcrypto,
} from 'node:crypto';
import { chmod, chown, mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  DEFAULT_ADMIN_USERNAME,
  DEFAULT_MQTTS_PORT,
  type DynsecPasswordHash,
  type MosquittoConfigOptions,
  renderAclFile,
  renderDynamicSecurityJson,
  renderMosquittoConfig,
} from './mosquitto-config.ts';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const pbkdf2Async = promisify(pbkdf2);

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
  /** acl_file lines for devices; default `pattern readwrite #` (every non-`$` topic). */
  deviceAclLines?: string[];
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
  /** Server certificate validity. Default 825 days. The server CA is valid 10 years. */
  serverCertDays?: number;
  /** Make a new server CA and certificate even if valid ones exist in outDir. */
  renewServerCertificate?: boolean;
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

export const SERVER_CA_FILE = 'server-ca.crt';
export const SERVER_CERT_FILE = 'server.crt';
export const SERVER_KEY_FILE = 'server.key';
export const DEVICE_CA_FILE = 'device-ca.crt';
export const COMBINED_CA_FILE = 'combined-ca.crt';
export const CONFIG_FILE = 'mosquitto.conf';
export const RENDER_OPTIONS_FILE = 'mosquitto-config.json';
export const DYNSEC_FILE = 'dynamic-security.json';
export const ACL_FILE = 'acl';
export const ADMIN_PASSWORD_FILE = 'dynsec-admin.password';

const DAY_MS = 86_400_000;
const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;

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
async function dynsecPasswordMatches(entry: Record<string, unknown>, password: string): Promise<boolean> {
  if (typeof entry.salt !== 'string' || typeof entry.password !== 'string' || typeof entry.iterations !== 'number') return false;
  const hash = await hashDynsecPassword(password, Buffer.from(entry.salt, 'base64'), entry.iterations);
  return hash.password === entry.password;
}

// ---------------------------------------------------------------------------------------------
// file helpers

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}

/** temp file in the same folder (created with the final mode, never wider) → fsync → rename. */
export async function writeFileAtomic(file: string, data: string | Uint8Array, mode: number): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const handle = await open(tmp, 'wx', mode & 0o700);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await chmod(tmp, mode);
    await rename(tmp, file);
  } catch (error) {
    await unlink(tmp).catch(() => {});
    throw error;
  }
}

interface Account {
  name: string;
  uid: number;
  gid: number;
  groupName: string;
}

async function lookupAccount(name: string): Promise<Account | null> {
  // `UID:GID`: the broker runs elsewhere (e.g. uid 1883 in the eclipse-mosquitto image).
  const numeric = /^(\d+):(\d+)$/.exec(name);
  if (numeric) return { name, uid: Number(numeric[1]), gid: Number(numeric[2]), groupName: numeric[2] };
  let passwd: string;
  try {
    passwd = await readFile('/etc/passwd', 'utf8');
  } catch {
    return null;
  }
  const entry = passwd.split('\n').map((l) => l.split(':')).find((f) => f[0] === name);
  if (!entry || entry.length < 4) return null;
  const uid = Number(entry[2]);
  const gid = Number(entry[3]);
  let groupName = String(gid);
  try {
    const groups = await readFile('/etc/group', 'utf8');
    const g = groups.split('\n').map((l) => l.split(':')).find((f) => Number(f[2]) === gid && f[0]);
    if (g) groupName = g[0];
  } catch {
    // keep the number
  }
  return { name, uid, gid, groupName };
}

const octal = (mode: number) => `0${(mode & 0o7777).toString(8)}`;

/** Can `account` (uid + primary gid) use this path with the given permission bits (r=4, w=2, x=1)? */
function allows(st: { uid: number; gid: number; mode: number }, account: Account, bits: number): boolean {
  if (st.uid === account.uid) return ((st.mode >> 6) & bits) === bits;
  if (st.gid === account.gid) return ((st.mode >> 3) & bits) === bits;
  return (st.mode & bits) === bits;
}

interface OwnershipContext {
  account: Account | null; // null: no changes (not root, or no such user)
  lines: string[];
}

/** chown root:<broker group> + chmod; only when running as root with the broker user present. */
async function giveToBrokerGroup(ctx: OwnershipContext, file: string, mode: number, why: string): Promise<void> {
  if (!ctx.account) {
    await chmod(file, mode);
    return;
  }
  await chown(file, 0, ctx.account.gid);
  await chmod(file, mode);
  ctx.lines.push(`chown root:${ctx.account.groupName} ${file} (mode ${octal(mode)}): ${why}`);
}

/** Make a folder traversable by the broker user; add group bits only where it is not already. */
async function ensureTraversable(ctx: OwnershipContext, dir: string, bits: number, why: string): Promise<void> {
  const account = ctx.account;
  if (!account) return;
  const st = await stat(dir);
  if (allows(st, account, bits)) return;
  if (st.uid === account.uid) {
    ctx.lines.push(`warning: ${dir} is owned by ${account.name} but lacks permissions; left unchanged`);
    return;
  }
  const groupBits = bits << 3;
  if (st.gid !== account.gid) {
    await chown(dir, st.uid, account.gid);
  }
  const mode = (st.mode & 0o7777) | groupBits;
  await chmod(dir, mode);
  ctx.lines.push(`chgrp ${account.groupName} ${dir} (mode ${octal(mode)}): ${why}`);
}

/** Report (do not change) ancestors the broker user cannot traverse. */
async function checkAncestors(ctx: OwnershipContext, dir: string): Promise<void> {
  const account = ctx.account;
  if (!account) return;
  let current = path.dirname(dir);
  for (;;) {
    try {
      const st = await stat(current);
      if (!allows(st, account, 1)) {
        ctx.lines.push(
          `warning: user ${account.name} cannot traverse ${current} (mode ${octal(st.mode)}); Mosquitto will fail to read files below it`,
        );
      }
    } catch {
      // ignore
    }
    const parent = path.dirname(current);
    if (parent === current) break;
    current = parent;
  }
}

// ---------------------------------------------------------------------------------------------
// certificates

function pemOf(label: string, der: ArrayBuffer | Buffer): string {
  const b64 = Buffer.from(der as ArrayBuffer).toString('base64');
  return `-----BEGIN ${label}-----\n${b64.replace(/.{1,64}/g, '$&\n')}-----END ${label}-----\n`;
}

function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] &= 0x7f; // positive
  bytes[0] |= 0x01; // no leading zero byte
  return bytes.toString('hex');
}

function validateHost(host: string): void {
  if (isIP(host)) return;
  if (!/^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?$/.test(host)) {
    throw new TypeError(`broker-config: host must be a DNS name or an IP address, got ${JSON.stringify(host)}`);
  }
}

function sanNames(host: string): x509.JsonGeneralName[] {
  const names: x509.JsonGeneralName[] = [];
  if (isIP(host)) names.push({ type: 'ip', value: host });
  else names.push({ type: 'dns', value: host });
  for (const ip of ['127.0.0.1', '::1']) {
    if (!names.some((n) => n.type === 'ip' && n.value === ip)) names.push({ type: 'ip', value: ip });
  }
  return names;
}

interface ServerPki {
  caPem: string;
  certPem: string;
  keyPem: string;
  caSubject: string;
  notAfter: Date;
}

async function generateServerPki(host: string, now: Date, serverCertDays: number): Promise<ServerPki> {
  const subtle = webcrypto.subtle;
  const caKeys = (await subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as CryptoKeyPair;
  const caName = `CN=certfleet MQTT server CA ${randomBytes(4).toString('hex')}`;
  const notBefore = new Date(now.getTime() - 5 * 60_000); // tolerate small clock skew
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: caName,
    notBefore,
    notAfter: new Date(now.getTime() + 3652 * DAY_MS),
    keys: caKeys,
    signingAlgorithm: SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });

  const serverKeys = (await subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as CryptoKeyPair;
  const notAfter = new Date(now.getTime() + serverCertDays * DAY_MS);
  const server = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: [{ CN: [host] }],
    issuer: ca.subject,
    notBefore,
    notAfter,
    publicKey: serverKeys.publicKey,
    signingKey: caKeys.privateKey,
    signingAlgorithm: SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(sanNames(host)),
      await x509.SubjectKeyIdentifierExtension.create(serverKeys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const pkcs8 = await subtle.exportKey('pkcs8', serverKeys.privateKey);
  return {
    caPem: ca.toString('pem') + '\n',
    certPem: server.toString('pem') + '\n',
    keyPem: pemOf('PRIVATE KEY', pkcs8),
    caSubject: ca.subject,
    notAfter,
  };
}

/** The existing server CA/cert/key, if they fit the host, chain, match and stay valid 30+ days. */
async function reusableServerPki(outDir: string, host: string, now: Date): Promise<ServerPki | null> {
  try {
    const [caPem, certPem, keyPem] = await Promise.all(
      [SERVER_CA_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE].map((f) => readFile(path.join(outDir, f), 'utf8')),
    );
    const ca = new NodeX509Certificate(caPem);
    const cert = new NodeX509Certificate(certPem);
    const hostOk = isIP(host) ? cert.checkIP(host) !== undefined : cert.checkHost(host) !== undefined;
    const notAfter = new Date(cert.validTo);
    if (!hostOk || notAfter.getTime() < now.getTime() + 30 * DAY_MS) return null;
    if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return null;
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) return null;
    return { caPem, certPem, keyPem, caSubject: ca.subject.replace(/\n/g, ', '), notAfter };
  } catch {
    return null;
  }
}

function normalizeCaPem(pem: string): { pem: string; subject: string } {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  if (!blocks || blocks.length === 0) {
    throw new TypeError('broker-config: deviceCaCertPem holds no PEM certificate');
  }
  const first = new NodeX509Certificate(blocks[0]);
  if (!first.ca) throw new TypeError(`broker-config: the Device CA certificate (${first.subject}) is not a CA certificate`);
  return { pem: `${blocks.join('\n')}\n`, subject: first.subject.replace(/\n/g, ', ') };
}

async function findDynsecPlugin(explicit: string | undefined, lines: string[]): Promise<string> {
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

// ---------------------------------------------------------------------------------------------

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

  // Server CA + certificate: reuse valid ones so devices' combined-ca.crt keeps working.
  let pki = options.renewServerCertificate ? null : await reusableServerPki(outDir, host, now);
  if (pki) {
    lines.push(`kept the existing server certificate for ${host} (valid until ${pki.notAfter.toISOString()}; renewServerCertificate to replace it)`);
  } else {
    pki = await generateServerPki(host, now, options.serverCertDays ?? 825);
    await writeFileAtomic(files.serverCaCert, pki.caPem, 0o644);
    lines.push(`wrote ${files.serverCaCert}: new server CA "${pki.caSubject}" (EC P-256, 10 years; its private key was discarded)`);
    await writeFileAtomic(files.serverCert, pki.certPem, 0o644);
    lines.push(
      `wrote ${files.serverCert}: server certificate for ${sanNames(host).map((n) => n.value).join(', ')} (serverAuth, valid until ${pki.notAfter.toISOString()})`,
    );
    await writeFileAtomic(files.serverKey, pki.keyPem, 0o600);
    lines.push(`wrote ${files.serverKey} (EC P-256 private key)`);
  }
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
  let dynamicSecurityResult: BrokerConfigResult['dynamicSecurity'];
  let dynamicSecurity: MosquittoConfigOptions['dynamicSecurity'];
  if (options.dynamicSecurity) {
    const ds = options.dynamicSecurity;
    const adminUsername = ds.adminUsername ?? DEFAULT_ADMIN_USERNAME;
    if (!adminUsername || adminUsername.includes('/') || /\s/.test(adminUsername)) {
      throw new TypeError('broker-config: dynamicSecurity.adminUsername must be non-empty without "/" or whitespace (device CNs contain "/")');
    }
    const adminHost = ds.adminHost ?? '127.0.0.1';
    const adminPort = ds.adminPort ?? port + 1;
    const pluginPath = await findDynsecPlugin(ds.pluginPath, lines);
    files.dynsecConfig = path.join(outDir, DYNSEC_FILE);
    files.aclFile = path.join(outDir, ACL_FILE);

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
    // The plugin rewrites its file in place after every change (measured: owner stays root).
    await giveToBrokerGroup(ctx, files.dynsecConfig, 0o660, 'the dynsec plugin reads and rewrites it as the broker user');

    await writeFileAtomic(files.aclFile, renderAclFile({ adminUsername, deviceAclLines: ds.deviceAclLines }), 0o600);
    lines.push(`wrote ${files.aclFile}: devices ${(ds.deviceAclLines ?? ['pattern readwrite #']).join('; ')}; admin gets $CONTROL/dynamic-security/#`);
    await giveToBrokerGroup(ctx, files.aclFile, 0o640, 're-read on every reload as the broker user');

    dynamicSecurity = {
      pluginPath,
      configFile: files.dynsecConfig,
      aclFile: files.aclFile,
      adminHost,
      adminPort,
      adminTls: ds.adminTls ?? false,
    };
    const scheme = ds.adminTls ? 'mqtts' : 'mqtt';
    const urlHost = isIP(adminHost) === 6 ? `[${adminHost}]` : adminHost;
    dynamicSecurityResult = {
      adminUsername,
      adminHost,
      adminPort,
      adminTls: ds.adminTls ?? false,
      url: `${scheme}://${urlHost}:${adminPort}`,
    };
    lines.push(`dynamic security plugin ${pluginPath}; admin listener ${dynamicSecurityResult.url} (password login only)`);
  }

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
    dynamicSecurity,
  };
  await writeFileAtomic(files.config, renderMosquittoConfig(renderOptions), 0o600);
  await giveToBrokerGroup(ctx, files.config, 0o640, 're-read on every reload as the broker user');
  lines.push(`wrote ${files.config}: TLS listener ${renderOptions.bindAddress}:${port}, require_certificate, use_identity_as_username, crlfile`);
  await writeFileAtomic(files.renderOptions, `${JSON.stringify(renderOptions, null, 2)}\n`, 0o644);

  return { lines, files, host, port, renderOptions, dynamicSecurity: dynamicSecurityResult };
}
