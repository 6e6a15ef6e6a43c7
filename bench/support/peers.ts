/**
 * The tools users would pick instead of certfleet, driven the same way in the same run:
 * openssl (a process per certificate, as a shell script would), the seed's Python approach
 * (cryptography, one process, key generation and signing in a loop) and cfssl (`cfssl serve`,
 * issuance over HTTP; `cfssl gencrl`).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { TAG, children, countChildren, readSingle, readTlv } from '../../src/domain/der.ts';

export const has = (cmd: string, args: string[] = ['version']) => spawnSync(cmd, args, { encoding: 'utf8' }).status === 0;
export const hasCfssl = () => has('cfssl');

export function pythonWithCryptography(): string | null {
  return ['python3', '/usr/bin/python3'].find((bin) => spawnSync(bin, ['-c', 'import cryptography'], { encoding: 'utf8' }).status === 0) ?? null;
}

/** cfssl 1.2 reads SEC1 ("EC PRIVATE KEY") or PKCS#1 keys, not PKCS#8: a converted copy next to it. */
export function legacyKeyFile(keyPath: string, keyType: 'ec' | 'rsa'): string {
  const out = `${keyPath}.legacy.pem`;
  execFileSync('openssl', keyType === 'ec' ? ['ec', '-in', keyPath, '-out', out] : ['rsa', '-in', keyPath, '-traditional', '-out', out], { stdio: 'pipe' });
  return out;
}

/** openssl: one `openssl req -x509 -CA` per certificate (new key, signed by the CA), `concurrency` at a time. */
export async function opensslIssueRate(ca: { certPath: string; keyPath: string }, keyType: 'ec-p256' | 'rsa-2048', seconds: number, concurrency: number) {
  const keyArgs = keyType === 'ec-p256' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] : ['-newkey', 'rsa:2048'];
  const until = Date.now() + seconds * 1000;
  let n = 0;
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const p = spawn('openssl', ['req', '-x509', '-new', ...keyArgs, '-nodes', '-keyout', '/dev/null', '-subj', '/O=bench/CN=bench-dev', '-CA', ca.certPath, '-CAkey', ca.keyPath, '-days', '30', '-out', '/dev/null'], { stdio: 'ignore' });
      p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`openssl exited ${code}`))));
    });
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < until) {
        await one();
        n++;
      }
    }),
  );
  return n / ((performance.now() - start) / 1000);
}

const PY_ISSUE = `
import datetime, json, sys, time
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID
ca_cert = x509.load_pem_x509_certificate(open(sys.argv[1], 'rb').read())
ca_key = serialization.load_pem_private_key(open(sys.argv[2], 'rb').read(), password=None)
key_type, seconds = sys.argv[3], float(sys.argv[4])
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < seconds:
    key = ec.generate_private_key(ec.SECP256R1()) if key_type == 'ec-p256' else rsa.generate_private_key(65537, 2048)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'bench/dev-%d' % n)]))
        .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256()))
    cert.public_bytes(serialization.Encoding.PEM)
    key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    n += 1
print(json.dumps({'rate': n / (time.perf_counter() - t0)}))
`;

/** The seed's approach: Python `cryptography`, key and certificate in a loop, one process. */
export function pythonIssueRate(python: string, ca: { certPath: string; keyPath: string }, keyType: 'ec-p256' | 'rsa-2048', seconds: number): number {
  const r = spawnSync(python, ['-c', PY_ISSUE, ca.certPath, ca.keyPath, keyType, String(seconds)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python issuance failed: ${r.stderr}`);
  return (JSON.parse(r.stdout.trim()) as { rate: number }).rate;
}

/** `cfssl serve` on a free port; resolves once it answers. */
export async function startCfsslServe(ca: { certPath: string; keyPath: string }, port: number): Promise<{ base: string; pid: number; stop(): Promise<void> }> {
  const child: ChildProcess = spawn('cfssl', ['serve', '-ca', ca.certPath, '-ca-key', ca.keyPath, '-address', '127.0.0.1', '-port', String(port)], { stdio: 'ignore' });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      await fetch(`${base}/api/v1/cfssl/info`, { method: 'POST', body: '{}' });
      break;
    } catch {
      if (i > 300 || child.exitCode !== null) throw new Error('cfssl serve did not start');
      await new Promise((r) => setTimeout(r, 50)); // polling for readiness: cfssl prints nothing machine-readable
    }
  }
  return {
    base,
    pid: child.pid!,
    async stop() {
      child.kill('SIGTERM');
      if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
    },
  };
}

export const cfsslNewcertBody = (keyType: 'ec-p256' | 'rsa-2048', i: number) =>
  JSON.stringify({ request: { CN: `bench/dev-${i}`, hosts: [''], key: keyType === 'ec-p256' ? { algo: 'ecdsa', size: 256 } : { algo: 'rsa', size: 2048 } } });

/** `cfssl gencrl` over a file of hex serials; returns ms including process start. */
export function cfsslGencrlMs(serialsFile: string, ca: { certPath: string; keyPath: string }, outFile: string): number {
  const t0 = performance.now();
  const r = spawnSync('cfssl', ['gencrl', serialsFile, ca.certPath, ca.keyPath], { encoding: 'utf8', maxBuffer: 1 << 30 });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`cfssl gencrl failed: ${r.stderr}`);
  spawnSync('sh', ['-c', `base64 -d > ${JSON.stringify(join(outFile))}`], { input: r.stdout });
  return ms;
}

/** Entries of a DER CRL, counted by walking TLVs (a cfssl CRL has no CRL number, so verifyCrl refuses it). */
export function crlEntryCount(der: Uint8Array): number {
  const list = readSingle(der);
  const tbs = readTlv(der, list.valueStart, list.end);
  // version?, signature, issuer, thisUpdate, nextUpdate?, revokedCertificates? (a SEQUENCE), [0] extensions
  const fields = children(der, tbs);
  const sequences = fields.filter((f) => f.tag === TAG.SEQUENCE);
  // signature and issuer are the first two SEQUENCEs; a third is the revoked list
  return sequences.length > 2 ? countChildren(der, sequences[2], TAG.SEQUENCE) : 0;
}
