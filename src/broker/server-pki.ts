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
import { toPem } from '../pki/pem.ts';
import { randomSerialHex } from '../pki/serial-number.ts';
import { SERVER_CA_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE } from './broker-files.ts';

const DAY_MS = 86_400_000;
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

export async function generateServerPki(host: string, now: Date, serverCertDays: number): Promise<ServerPki> {
  const subtle = webcrypto.subtle;
  const caKeys = (await subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as CryptoKeyPair;
  const caName = `CN=certfleet MQTT server CA ${randomBytes(4).toString('hex')}`;
  const notBefore = new Date(now.getTime() - 5 * 60_000); // tolerate small clock skew
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialHex(),
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
    serialNumber: randomSerialHex(),
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
    keyPem: toPem('PRIVATE KEY', new Uint8Array(pkcs8)),
    caSubject: ca.subject,
    notAfter,
  };
}

/** The existing server CA/cert/key, if they fit the host, chain, match and stay valid 30+ days. */
export async function reusableServerPki(outDir: string, host: string, now: Date): Promise<ServerPki | null> {
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

export function normalizeCaPem(pem: string): { pem: string; subject: string } {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  if (!blocks || blocks.length === 0) {
    throw new TypeError('broker-config: deviceCaCertPem holds no PEM certificate');
  }
  const first = new NodeX509Certificate(blocks[0]);
  if (!first.ca) throw new TypeError(`broker-config: the Device CA certificate (${first.subject}) is not a CA certificate`);
  return { pem: `${blocks.join('\n')}\n`, subject: first.subject.replace(/\n/g, ', ') };
}
