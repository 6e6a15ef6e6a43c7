/**
 * CRL build benchmark (not a test): our pure builder vs `openssl ca -gencrl` on the
 * same revocations, same EC P-256 CA, same CRL extensions, timed in the same run.
 *
 *   node --import tsx bench/crl-build.bench.ts
 *
 * "ours" = streaming entries encoder (one entry object per row, like a DB cursor)
 * + build + sign. "openssl" = one `openssl ca -gencrl` process reading index.txt
 * (process start, index parse, build, sign, PEM write). verify = our verifyCrl.
 */
import { spawnSync } from 'node:child_process';
import { createPrivateKey, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCrl, createRevokedEntriesEncoder } from '../src/crl/build-crl.ts';
import { caIdentityFromCertificate, createCrlSigner } from '../src/pki/crl-signer.ts';
import { crlPemToDer, verifyCrl } from '../src/crl/verify-crl.ts';
import { opensslIndexTime, writeOpensslCaConfig } from './support/openssl-ca.ts';
import { emitTable, scaled } from './support/results.ts';

const SIZES = scaled([10_000, 100_000, 1_000_000], [10_000, 100_000]);
const OPENSSL_TIMEOUT_MS = 60_000;
const REASONS = [0, 1, 4, 5]; // unspecified, keyCompromise, superseded, cessationOfOperation
const OPENSSL_REASON: Record<number, string> = { 1: 'keyCompromise', 4: 'superseded', 5: 'cessationOfOperation' };

const dir = mkdtempSync(join(tmpdir(), 'certfleet-crl-bench-'));
try {
  main();
} finally {
  rmSync(dir, { recursive: true, force: true });
}

function sh(cmd: string, args: string[], timeout?: number) {
  const r = spawnSync(cmd, args, { cwd: dir, encoding: 'utf8', timeout, maxBuffer: 1 << 20 });
  return r;
}

function main() {
  const caKey = join(dir, 'ca.key');
  const caPem = join(dir, 'ca.pem');
  const mk = sh('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', caKey, '-out', caPem,
    '-days', '30', '-subj', '/O=Certfleet Bench/CN=Bench CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-addext', 'subjectKeyIdentifier=hash',
  ]);
  if (mk.status !== 0) throw new Error(mk.stderr);
  const caConfig = writeOpensslCaConfig(dir, { certPath: caPem, keyPath: caKey });
  const ca = caIdentityFromCertificate(readFileSync(caPem, 'utf8'));
  const signer = createCrlSigner(createPrivateKey(readFileSync(caKey)));

  const t0 = performance.now();
  sh('openssl', ['version']);
  const opensslStartMs = performance.now() - t0;

  const rows: (string | number)[][] = [];
  console.log(`node ${process.version}, ${sh('openssl', ['version']).stdout.trim()}, EC P-256 CA, openssl process start ≈ ${opensslStartMs.toFixed(0)} ms`);
  console.log('entries    | ours encode | build+sign | total ms |    MB | verify ms | openssl ms | openssl MB | openssl/ours');
  console.log('-----------|-------------|------------|----------|-------|-----------|------------|------------|-------------');

  let crlNumber = 1n;
  for (const n of SIZES) {
    // synthetic revocations, ascending serials (16 bytes, random prefix), spread over 30 days
    const prefix = '5' + randomBytes(11).toString('hex').slice(0, 21); // + 10 digits = 32 (even, for index.txt)
    const serials: string[] = new Array(n);
    const times: number[] = new Array(n);
    const reasons: number[] = new Array(n);
    const start = Date.now() - 30 * 86_400_000;
    for (let i = 0; i < n; i++) {
      serials[i] = (prefix + (i * 7919 + 4096).toString(16).padStart(10, '0')).toUpperCase();
      times[i] = start + Math.floor((i * 30 * 86_400_000) / n);
      reasons[i] = REASONS[i % REASONS.length];
    }

    // ours: best of 3
    let best = { encode: Infinity, build: Infinity, total: Infinity, verify: Infinity, bytes: 0 };
    for (let run = 0; run < 3; run++) {
      const a = performance.now();
      const enc = createRevokedEntriesEncoder();
      for (let i = 0; i < n; i++) enc.add({ serialHex: serials[i], revokedAt: new Date(times[i]), reasonCode: reasons[i] });
      const revoked = enc.finish();
      const b = performance.now();
      const now = new Date();
      const der = buildCrl({
        issuerNameDer: ca.subjectDer,
        authorityKeyId: ca.subjectKeyId,
        thisUpdate: now,
        nextUpdate: new Date(now.getTime() + 7 * 86_400_000),
        crlNumber: crlNumber++,
        revoked,
        signer,
      });
      const c = performance.now();
      const v = verifyCrl(der, { caPublicKey: ca.publicKey, now });
      const d = performance.now();
      if (v.entryCount !== n) throw new Error(`count ${v.entryCount} != ${n}`);
      if (c - a < best.total) best = { encode: b - a, build: c - b, total: c - a, verify: d - c, bytes: der.length };
    }

    // openssl ca -gencrl on the same revocations
    let opensslCol = 'skipped';
    let opensslMb = '-';
    let ratio = '-';
    const lines: string[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const rev = opensslIndexTime(times[i]) + (reasons[i] ? ',' + OPENSSL_REASON[reasons[i]] : '');
      lines[i] = `R\t${opensslIndexTime(Date.now() + 365 * 86_400_000)}\t${rev}\t${serials[i]}\tunknown\t/CN=device-${i}`;
    }
    writeFileSync(join(dir, 'index.txt'), lines.join('\n') + '\n');
    writeFileSync(join(dir, 'crlnumber'), '01\n');
    const oa = performance.now();
    const r = sh('openssl', ['ca', '-gencrl', '-config', caConfig, '-out', join(dir, 'openssl-crl.pem')], OPENSSL_TIMEOUT_MS);
    const oms = performance.now() - oa;
    if (r.error && (r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT') {
      opensslCol = `>${OPENSSL_TIMEOUT_MS / 1000}s, skipped`;
    } else if (r.status !== 0) {
      throw new Error(`openssl ca -gencrl failed: ${r.stderr}`);
    } else {
      const oder = crlPemToDer(readFileSync(join(dir, 'openssl-crl.pem'), 'utf8'));
      const ov = verifyCrl(oder, { caPublicKey: ca.publicKey, now: new Date() });
      if (ov.entryCount !== n) throw new Error(`openssl CRL has ${ov.entryCount} entries, expected ${n}`);
      opensslCol = oms.toFixed(0);
      opensslMb = (oder.length / 1e6).toFixed(2);
      ratio = `${(oms / best.total).toFixed(1)}x`;
    }
    console.log(
      [
        String(n).padStart(10),
        best.encode.toFixed(0).padStart(11),
        best.build.toFixed(0).padStart(10),
        best.total.toFixed(0).padStart(8),
        (best.bytes / 1e6).toFixed(2).padStart(5),
        best.verify.toFixed(0).padStart(9),
        opensslCol.padStart(10),
        opensslMb.padStart(10),
        ratio.padStart(12),
      ].join(' | '),
    );
    rows.push([n, Number(best.encode.toFixed(0)), Number(best.build.toFixed(0)), Number(best.total.toFixed(0)), Number(best.verify.toFixed(0)), opensslCol, ratio]);
  }
  emitTable({
    id: 'crl-build',
    title: 'CRL builder alone (no database)',
    description:
      'certfleet: the pure streaming builder (entries encoded one row at a time, as from a database cursor, then build + sign), best of 3. ' +
      'openssl: one `openssl ca -gencrl` process on the same revocations (process start, index parse, build, sign, PEM write). Same EC P-256 CA and CRL extensions.',
    columns: ['revoked', 'certfleet encode ms', 'build + sign ms', 'certfleet total ms', 'verify ms', 'openssl ms', 'openssl / certfleet'],
    rows,
  });
}
