import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function run(cmd: string, args: string[], input?: string) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input });
  return { code: r.status ?? -1, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

const scratch = () => mkdtempSync(join(tmpdir(), 'certfleet-openssl-'));

/** `openssl verify -purpose sslclient` of a leaf against the CA (optionally with a CRL). */
export function opensslVerify(caPem: string, certPem: string, options: { crlPem?: string; purpose?: string } = {}) {
  const dir = scratch();
  writeFileSync(join(dir, 'ca.pem'), caPem);
  writeFileSync(join(dir, 'leaf.pem'), certPem);
  const args = ['verify', '-CAfile', join(dir, 'ca.pem')];
  if (options.purpose !== '') args.push('-purpose', options.purpose ?? 'sslclient');
  if (options.crlPem) {
    writeFileSync(join(dir, 'crl.pem'), options.crlPem);
    args.push('-crl_check', '-CRLfile', join(dir, 'crl.pem'));
  }
  args.push(join(dir, 'leaf.pem'));
  return run('openssl', args);
}

export function opensslText(certPem: string): string {
  return run('openssl', ['x509', '-noout', '-text'], certPem).out;
}

/** A CSR made by openssl, as a device would. */
export function opensslCsr(keySpec: 'ec-p256' | 'rsa-2048' | 'rsa-1024' | 'ec-secp256k1', subject = '/CN=whatever/O=device') {
  const dir = scratch();
  const key = join(dir, 'key.pem');
  const genArgs =
    keySpec.startsWith('rsa')
      ? ['genpkey', '-algorithm', 'RSA', '-pkeyopt', `rsa_keygen_bits:${keySpec.split('-')[1]}`, '-out', key]
      : ['genpkey', '-algorithm', 'EC', '-pkeyopt', `ec_paramgen_curve:${keySpec === 'ec-p256' ? 'P-256' : 'secp256k1'}`, '-out', key];
  const g = run('openssl', genArgs);
  if (g.code !== 0) throw new Error(g.out);
  const r = run('openssl', ['req', '-new', '-key', key, '-subj', subject, '-outform', 'PEM']);
  if (r.code !== 0) throw new Error(r.out);
  return { csrPem: r.out.slice(r.out.indexOf('-----BEGIN')), keyPath: key };
}
