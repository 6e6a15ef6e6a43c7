import { createHash } from 'node:crypto';
import { decodeInteger, readSingle } from '../domain/der.ts';
import { pemBlocks } from '../pki/pem.ts';
import { x509 } from '../pki/x509.ts';
import { details, relativeTime, table, type Cell } from './output.ts';

type Kind = 'certificate' | 'csr' | 'crl';

const LABELS: [string, Kind][] = [
  ['CERTIFICATE', 'certificate'],
  ['CERTIFICATE REQUEST', 'csr'],
  ['NEW CERTIFICATE REQUEST', 'csr'],
  ['X509 CRL', 'crl'],
];

/** What a file holds: the first PEM block we know, else DER tried as each kind in turn. */
export function detect(bytes: Buffer): { kind: Kind; der: Uint8Array<ArrayBuffer> } {
  const text = bytes.toString('latin1');
  for (const [label, kind] of LABELS) {
    const [der] = pemBlocks(text, label);
    if (der) return { kind, der: new Uint8Array(der) };
  }
  if (bytes[0] !== 0x30) throw new Error('not a certificate, CSR or CRL (no PEM block of those kinds, and not DER)');
  for (const kind of ['certificate', 'crl', 'csr'] as Kind[]) {
    try {
      parse(kind, new Uint8Array(bytes));
      return { kind, der: new Uint8Array(bytes) };
    } catch {
      // try the next kind
    }
  }
  throw new Error('DER that is neither a certificate, a CRL nor a CSR');
}

function parse(kind: Kind, der: Uint8Array<ArrayBuffer>) {
  if (kind === 'certificate') return new x509.X509Certificate(der);
  if (kind === 'csr') return new x509.Pkcs10CertificateRequest(der);
  return new x509.X509Crl(der);
}

const keyText = (key: x509.PublicKey) => {
  const alg = key.algorithm as { name: string; namedCurve?: string; modulusLength?: number };
  return alg.namedCurve ? `EC ${alg.namedCurve}` : alg.modulusLength ? `RSA ${alg.modulusLength}` : alg.name;
};
const when = (d: Date | undefined) => (d ? `${d.toISOString()} (${relativeTime(d)})` : null);
const sha256 = (der: Uint8Array) => createHash('sha256').update(der).digest('hex').replace(/(..)(?!$)/g, '$1:').toUpperCase();

/** RFC 5280 4.2.1.12 (and the common ones after it): OID → name. */
const EKU_NAMES: Record<string, string> = {
  '1.3.6.1.5.5.7.3.1': 'serverAuth',
  '1.3.6.1.5.5.7.3.2': 'clientAuth',
  '1.3.6.1.5.5.7.3.3': 'codeSigning',
  '1.3.6.1.5.5.7.3.4': 'emailProtection',
  '1.3.6.1.5.5.7.3.8': 'timeStamping',
  '1.3.6.1.5.5.7.3.9': 'OCSPSigning',
  '1.3.6.1.5.5.7.3.28': 'cmcRA',
  '2.5.29.37.0': 'anyExtendedKeyUsage',
};

/** RFC 5280 4.2.1.3 KeyUsage bits, in the order of the standard. */
const KEY_USAGE_NAMES: [x509.KeyUsageFlags, string][] = [
  [x509.KeyUsageFlags.digitalSignature, 'digitalSignature'],
  [x509.KeyUsageFlags.nonRepudiation, 'nonRepudiation'],
  [x509.KeyUsageFlags.keyEncipherment, 'keyEncipherment'],
  [x509.KeyUsageFlags.dataEncipherment, 'dataEncipherment'],
  [x509.KeyUsageFlags.keyAgreement, 'keyAgreement'],
  [x509.KeyUsageFlags.keyCertSign, 'keyCertSign'],
  [x509.KeyUsageFlags.cRLSign, 'cRLSign'],
  [x509.KeyUsageFlags.encipherOnly, 'encipherOnly'],
  [x509.KeyUsageFlags.decipherOnly, 'decipherOnly'],
];

export const ekuNames = (oids: readonly string[]) => oids.map((o) => (EKU_NAMES[o] ? `${EKU_NAMES[o]}` : o));
export const keyUsageNames = (usages: number) => KEY_USAGE_NAMES.filter(([bit]) => (usages & bit) !== 0).map(([, name]) => name);

/** Named key usages and extended key usages (null when the extension is absent). */
function usages(exts: readonly x509.Extension[]) {
  const ku = exts.find((e) => e instanceof x509.KeyUsagesExtension);
  const eku = exts.find((e) => e instanceof x509.ExtendedKeyUsageExtension);
  return { keyUsage: ku ? keyUsageNames(ku.usages) : null, extendedKeyUsage: eku ? ekuNames(eku.usages.map(String)) : null };
}

function extensionsText(exts: readonly x509.Extension[]): [string, Cell][] {
  const out: [string, Cell][] = [];
  for (const e of exts) {
    if (e instanceof x509.SubjectAlternativeNameExtension) out.push(['subject alt names', e.names.items.map((n) => `${n.type}:${n.value}`).join(', ')]);
    else if (e instanceof x509.ExtendedKeyUsageExtension) out.push(['extended key usage', `${ekuNames(e.usages.map(String)).join(', ')}${e.critical ? ' (critical)' : ''}`]);
    else if (e instanceof x509.BasicConstraintsExtension) out.push(['basic constraints', `CA:${e.ca}${e.pathLength !== undefined ? `, pathlen:${e.pathLength}` : ''}`]);
    else if (e instanceof x509.KeyUsagesExtension) out.push(['key usage', `${keyUsageNames(e.usages).join(', ')}${e.critical ? ' (critical)' : ''}`]);
    else if (e instanceof x509.CRLDistributionPointsExtension)
      out.push(['CRL distribution points', e.distributionPoints.flatMap((p) => p.distributionPoint?.fullName?.map((n) => n.uniformResourceIdentifier ?? '') ?? []).join(', ')]);
  }
  return out;
}

export async function inspect(bytes: Buffer, entriesShown: number) {
  const { kind, der } = detect(bytes);
  if (kind === 'certificate') {
    const c = new x509.X509Certificate(der);
    const data = {
      kind,
      subject: c.subject,
      issuer: c.issuer,
      serial_number: c.serialNumber,
      not_before: c.notBefore.toISOString(),
      not_after: c.notAfter.toISOString(),
      public_key: keyText(c.publicKey),
      signature_algorithm: c.signatureAlgorithm.name,
      fingerprint_sha256: sha256(der),
      self_signed: await c.isSelfSigned(),
      key_usage: usages(c.extensions).keyUsage,
      extended_key_usage: usages(c.extensions).extendedKeyUsage,
    };
    const pairs: [string, Cell][] = [
      ['type', 'certificate'],
      ['subject', c.subject],
      ['issuer', c.issuer],
      ['serial', c.serialNumber],
      ['valid from', when(c.notBefore)],
      ['valid until', when(c.notAfter)],
      ['public key', data.public_key],
      ['signature', data.signature_algorithm],
      ['SHA-256', data.fingerprint_sha256],
      ...extensionsText(c.extensions),
    ];
    return { human: details(pairs), data, full: c.toString('text') };
  }
  if (kind === 'csr') {
    const r = new x509.Pkcs10CertificateRequest(der);
    const valid = await r.verify();
    const data = { kind, subject: r.subject, public_key: keyText(r.publicKey), signature_algorithm: r.signatureAlgorithm.name, signature_valid: valid };
    const pairs: [string, Cell][] = [['type', 'certificate request (CSR)'], ['subject', r.subject], ['public key', data.public_key], ['signature', `${data.signature_algorithm} (${valid ? 'valid' : 'INVALID'})`], ...extensionsText(r.extensions)];
    return { human: details(pairs), data, full: r.toString('text') };
  }
  const crl = new x509.X509Crl(der);
  const numberExt = crl.extensions.find((e) => e.type === '2.5.29.20');
  const crlNumber = numberExt ? decodeInteger(new Uint8Array(numberExt.value), readSingle(new Uint8Array(numberExt.value))).toString() : null;
  const entries = crl.entries.map((e) => ({ serial_number: e.serialNumber, revoked_at: e.revocationDate.toISOString(), reason: e.reason === undefined ? null : (x509.X509CrlReason[e.reason] ?? String(e.reason)) }));
  const data = { kind, issuer: crl.issuer, crl_number: crlNumber, this_update: crl.thisUpdate.toISOString(), next_update: crl.nextUpdate?.toISOString() ?? null, entry_count: entries.length, entries };
  const pairs: [string, Cell][] = [
    ['type', 'CRL'],
    ['issuer', crl.issuer],
    ['number', crlNumber],
    ['this update', when(crl.thisUpdate)],
    ['next update', when(crl.nextUpdate)],
    ['entries', entries.length],
    ['SHA-256', sha256(der)],
  ];
  const shown = entries.slice(0, entriesShown).map((e) => [e.serial_number, e.revoked_at, e.reason]);
  const list = shown.length ? `\n\n${table(['serial', 'revoked at', 'reason'], shown)}${entries.length > shown.length ? `\n… ${entries.length - shown.length} more (--entries N)` : ''}` : '';
  return { human: details(pairs) + list, data, full: details(pairs) + list };
}
