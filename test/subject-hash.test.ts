/** src/pki/subject-hash.ts is OpenSSL's subject hash (the names of a `capath` directory's files). */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { crlIssuerHash, subjectHash } from '../src/pki/subject-hash.ts';

const dir = mkdtempSync(join(tmpdir(), 'certfleet-subject-hash-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function certificate(subject: string, extra: string[] = []): string {
  const out = join(dir, `c${Math.random().toString(36).slice(2)}.crt`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${out}.key`, '-out', out, '-days', '2', '-subj', subject, ...extra], { stdio: 'ignore' });
  return out;
}

describe('subjectHash equals `openssl x509 -hash`', () => {
  it.each([
    ['/CN=Acme Manufacturing Claim CA'],
    ['/CN=  MiXeD   Case\tName  /O=Acme, Inc./C=DE'],
    ['/CN=Ünïcödé Fabrik/O=Straße GmbH'],
    ['/C=US/ST=CA/L=San Francisco/O=Example/OU=Devices/CN=claim.example.com/emailAddress=Factory@Example.COM'],
    ['/DC=com/DC=example/CN=x+serialNumber=42'],
  ])('%s', (subject) => {
    const file = certificate(subject, ['-utf8']);
    const expected = execFileSync('openssl', ['x509', '-in', file, '-noout', '-hash'], { encoding: 'utf8' }).trim();
    expect(subjectHash(new X509Certificate(readFileSync(file)).raw)).toBe(expected);
  });

  it('PrintableString names (openssl without -utf8)', () => {
    const file = certificate('/CN=PRINTABLE  Name/O=Upper CASE');
    const expected = execFileSync('openssl', ['x509', '-in', file, '-noout', '-hash'], { encoding: 'utf8' }).trim();
    expect(subjectHash(new X509Certificate(readFileSync(file)).raw)).toBe(expected);
  });
});

describe('crlIssuerHash equals `openssl crl -hash`', () => {
  it.each([['/CN=  MiXeD   Case\tCA  /O=Acme, Inc.'], ['/CN=Ünïcödé CA/O=Straße GmbH']])('%s', (subject) => {
    const ca = certificate(subject, ['-utf8', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
    writeFileSync(`${ca}.index`, '');
    writeFileSync(`${ca}.cnf`, `[ca]\ndefault_ca=d\n[d]\ndatabase=${ca}.index\ndefault_md=sha256\ndefault_crl_days=2\n`);
    execFileSync('openssl', ['ca', '-gencrl', '-config', `${ca}.cnf`, '-keyfile', `${ca}.key`, '-cert', ca, '-out', `${ca}.crl`], { stdio: 'ignore' });
    const expected = execFileSync('openssl', ['crl', '-in', `${ca}.crl`, '-noout', '-hash'], { encoding: 'utf8' }).trim();
    const der = Buffer.from(readFileSync(`${ca}.crl`, 'latin1').replace(/-----[^-]+-----|\s/g, ''), 'base64');
    expect(crlIssuerHash(der)).toBe(expected);
    // A CA's CRL is filed under the CA's own subject hash.
    expect(crlIssuerHash(der)).toBe(subjectHash(new X509Certificate(readFileSync(ca)).raw));
  });
});
