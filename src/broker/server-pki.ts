/**
 * The broker's own TLS identity: a server CA and a server certificate (EC P-256) for the MQTT
 * host, reused while they fit, and the Device CA bundle that client certificates must chain to.
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { X509Certificate as NodeX509Certificate, createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import { pemBlocks, toPem } from '../pki/pem.ts';
import { randomSerialHex } from '../pki/serial-number.ts';
import { SERVER_CA_FILE, SERVER_CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE } from './broker-files.ts';
import { DAY_MS, SECOND_MS } from '../domain/clock.ts';
import { isMissing } from '../support/missing-file.ts';

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;

export function validateHost(host: string): void {
  if (isIP(host)) return;
  if (!/^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?$/.test(host)) {
    throw new TypeError(`broker-config: host must be a DNS name or an IP address, got ${JSON.stringify(host)}`);
  }
}

export function sanNames(host: string): x509.JsonGeneralName[] {
  const names: x509.JsonGeneralName[] = [];
  if (isIP(host)) names.push({ type: 'ip', value: host });
  else names.push({ type: 'dns', value: host });
  for (const ip of ['127.0.0.1', '::1']) {
    if (!names.some((n) => n.type === 'ip' && n.value === ip)) names.push({ type: 'ip', value: ip });
  }
  return names;
}

export interface ServerPki {
  caPem: string;
  certPem: string;
  keyPem: string;
  caSubject: string;
  notAfter: Date;
}

/** Apple platforms refuse TLS server certificates valid longer than this. */
export const MAX_SERVER_CERT_DAYS = 397;
const SERVER_CA_DAYS = 3652;

/** The server CA with its private key: kept so that renewals keep devices' combined-ca.crt valid. */
export interface ServerCa {
  certPem: string;
  keyPem: string;
  subject: string;
  notAfter: Date;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
}

export function checkServerCertDays(days: number): void {
  if (!Number.isInteger(days) || days < 1 || days > MAX_SERVER_CERT_DAYS) {
    throw new TypeError(`broker-config: the server certificate validity must be 1 to ${MAX_SERVER_CERT_DAYS} days (got ${days})`);
  }
}

export async function generateServerCa(now: Date): Promise<ServerCa> {
  const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as CryptoKeyPair;
  const notAfter = new Date(now.getTime() + SERVER_CA_DAYS * DAY_MS);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialHex(),
    name: `CN=certfleet MQTT server CA ${randomBytes(4).toString('hex')}`,
    notBefore: skewTolerant(now),
    notAfter,
    keys,
    signingAlgorithm: SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return {
    certPem: ca.toString('pem') + '\n',
    keyPem: toPem('PRIVATE KEY', new Uint8Array(pkcs8)),
    subject: ca.subject,
    notAfter,
    privateKey: keys.privateKey,
    publicKey: keys.publicKey,
  };
}

/** The kept server CA of an earlier run, if its certificate (in `outDir`) and key (in `keyDir`) are there and match. */
export async function loadServerCa(outDir: string, keyDir = outDir): Promise<ServerCa | null> {
  let certPem: string;
  let keyPem: string;
  try {
    [certPem, keyPem] = await Promise.all([path.join(outDir, SERVER_CA_FILE), path.join(keyDir, SERVER_CA_KEY_FILE)].map((f) => readFile(f, 'utf8')));
  } catch (error) {
    // No kept CA: a new one is made. A kept CA that cannot be read (EACCES, ...) is an error: a
    // new CA would make every device's combined-ca.crt stale.
    if (isMissing(error)) return null;
    throw new Error(`cannot read the kept server CA (${SERVER_CA_FILE} in ${outDir}, its key in ${keyDir}): ${(error as Error).message}`, { cause: error });
  }
  const cert = new NodeX509Certificate(certPem);
  const nodeKey = createPrivateKey(keyPem);
  if (!cert.ca || !cert.checkPrivateKey(nodeKey)) return null;
  const der = nodeKey.export({ format: 'der', type: 'pkcs8' });
  const privateKey = await webcrypto.subtle.importKey('pkcs8', der, EC_P256, true, ['sign']);
  const publicKey = await new x509.X509Certificate(certPem).publicKey.export(EC_P256, ['verify']);
  return { certPem, keyPem, subject: cert.subject.replace(/\n/g, ', '), notAfter: new Date(cert.validTo), privateKey, publicKey };
}

/** A new server certificate (EC P-256, serverAuth) for `host`, signed by the server CA. */
export async function issueServerCertificate(ca: ServerCa, host: string, now: Date, days: number): Promise<ServerPki> {
  checkServerCertDays(days);
  const serverKeys = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as CryptoKeyPair;
  const notBefore = skewTolerant(now);
  // The whole lifetime, backdating included, stays within `days`, counting both ends (RFC 5280
  // 4.1.2.5: notAfter is inside the period, so `days` days end one second before notBefore + days).
  const notAfter = new Date(Math.min(notBefore.getTime() + days * DAY_MS - SECOND_MS, ca.notAfter.getTime()));
  const server = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialHex(),
    subject: [{ CN: [host] }],
    issuer: new x509.X509Certificate(ca.certPem).subject,
    notBefore,
    notAfter,
    publicKey: serverKeys.publicKey,
    signingKey: ca.privateKey,
    signingAlgorithm: SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(sanNames(host)),
      await x509.SubjectKeyIdentifierExtension.create(serverKeys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.publicKey),
    ],
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', serverKeys.privateKey);
  return {
    caPem: ca.certPem,
    certPem: server.toString('pem') + '\n',
    keyPem: toPem('PRIVATE KEY', new Uint8Array(pkcs8)),
    caSubject: ca.subject,
    notAfter,
  };
}

function skewTolerant(now: Date): Date {
  return new Date(now.getTime() - 5 * 60_000);
}

function matchesHost(cert: NodeX509Certificate, host: string): boolean {
  return isIP(host) ? cert.checkIP(host) !== undefined : cert.checkHost(host) !== undefined;
}

/** The validity period in days, both ends included (RFC 5280 4.1.2.5). */
function lifetimeDays(cert: NodeX509Certificate): number {
  return (Date.parse(cert.validTo) - Date.parse(cert.validFrom) + SECOND_MS) / DAY_MS;
}

/**
 * The existing server CA/cert/key, if they fit the host, chain, match, stay valid 30+ days and
 * are not valid longer than MAX_SERVER_CERT_DAYS (older versions wrote 825-day certificates).
 */
export async function reusableServerPki(outDir: string, host: string, now: Date): Promise<ServerPki | null> {
  try {
    const [caPem, certPem, keyPem] = await Promise.all(
      [SERVER_CA_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE].map((f) => readFile(path.join(outDir, f), 'utf8')),
    );
    const ca = new NodeX509Certificate(caPem);
    const cert = new NodeX509Certificate(certPem);
    const notAfter = new Date(cert.validTo);
    if (!matchesHost(cert, host) || notAfter.getTime() < now.getTime() + 30 * DAY_MS) return null;
    if (lifetimeDays(cert) > MAX_SERVER_CERT_DAYS) return null;
    if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return null;
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) return null;
    return { caPem, certPem, keyPem, caSubject: ca.subject.replace(/\n/g, ', '), notAfter };
  } catch {
    return null;
  }
}

export interface SuppliedServerCertificate {
  certPem: string;
  keyPem: string;
  /** The CA that issued certPem: devices trust it through combined-ca.crt. */
  caPem: string;
}

/** An operator's own server certificate: checked (key, issuer, host, validity) before it is used. */
export function checkSuppliedServerCertificate(supplied: SuppliedServerCertificate, host: string, now: Date): { pki: ServerPki; warnings: string[] } {
  const cert = new NodeX509Certificate(supplied.certPem);
  const ca = new NodeX509Certificate(supplied.caPem);
  const warnings: string[] = [];
  if (!cert.checkPrivateKey(createPrivateKey(supplied.keyPem))) {
    throw new TypeError('broker-config: the server key does not match the server certificate');
  }
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) {
    throw new TypeError(`broker-config: the server certificate is not issued by the given server CA (${ca.subject.replace(/\n/g, ', ')})`);
  }
  if (!matchesHost(cert, host)) {
    throw new TypeError(`broker-config: the server certificate does not name the host ${host} (subjectAltName)`);
  }
  const notAfter = new Date(cert.validTo);
  if (notAfter.getTime() <= now.getTime()) throw new TypeError(`broker-config: the server certificate expired at ${notAfter.toISOString()}`);
  if (lifetimeDays(cert) > MAX_SERVER_CERT_DAYS) {
    warnings.push(`warning: the supplied server certificate is valid longer than ${MAX_SERVER_CERT_DAYS} days; Apple devices refuse it`);
  }
  return {
    pki: { caPem: supplied.caPem.trimEnd() + '\n', certPem: supplied.certPem, keyPem: supplied.keyPem, caSubject: ca.subject.replace(/\n/g, ', '), notAfter },
    warnings,
  };
}

export function normalizeCaPem(pem: string): { pem: string; subject: string } {
  const blocks = pemBlocks(pem, 'CERTIFICATE').map((der) => toPem('CERTIFICATE', der).trimEnd());
  if (blocks[0] === undefined) {
    throw new TypeError('broker-config: deviceCaCertPem holds no PEM certificate');
  }
  const first = new NodeX509Certificate(blocks[0]);
  if (!first.ca) throw new TypeError(`broker-config: the Device CA certificate (${first.subject}) is not a CA certificate`);
  return { pem: `${blocks.join('\n')}\n`, subject: first.subject.replace(/\n/g, ', ') };
}
