/**
 * Where a broker reads its CRLs, and how the agent writes them there (atomically, each file):
 * - Mosquitto: one file holding the whole bundle (PEM, concatenated): the `crlfile`, or (the
 *   capath layout broker-config writes by default, issue 22) the file the `<file>.hash/<CA subject
 *   hash>.r0` links of the listener's `capath` point to (src/broker/crl-hash-links.ts), kept here
 *   after each write, before the reload, when that folder exists.
 * - RabbitMQ (Erlang/OTP ssl with `{crl_cache, {ssl_crl_hash_dir, {internal, [{dir, DIR}]}}}`):
 *   a directory with one `<issuer hash>.r0` per CA, the OpenSSL subject hash of the CRL issuer.
 *   OTP reads that directory at every handshake, so a new file needs no reload. The files are DER:
 *   OTP decodes the file at every handshake, and a PEM file adds a base64 decode of the whole CRL
 *   to each (OTP 25, 100,000 entries: 0.10 s of CPU for the PEM, 0.14 s for the DER decode itself,
 *   per handshake; measured with public_key:pem_decode / der_decode on this machine).
 */
import { existsSync } from 'node:fs';
import { crlHashDirFor, syncCrlHashLinks } from '../crl-hash-links.ts';
import { crlIssuerHash } from '../../pki/subject-hash.ts';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { crlDerToPem } from '../../crl/verify-crl.ts';
import { writeFileAtomic } from '../../support/atomic-file.ts';
import type { CheckedCrl } from './bundle-check.ts';
import { unlessMissing } from '../../support/missing-file.ts';

export interface CrlTarget {
  /** What the broker reads now (PEM), for the agent's floor at start; null when nothing is there. */
  read(): Promise<string | null>;
  write(crls: CheckedCrl[], bundlePem: string): Promise<void>;
  readonly description: string;
}

export function crlFileTarget(file: string, options: { hashDir?: string | null } = {}): CrlTarget {
  const hashDir = options.hashDir === undefined ? (existsSync(crlHashDirFor(file)) ? crlHashDirFor(file) : null) : options.hashDir;
  return {
    description: hashDir ? `CRL file ${file} (capath ${hashDir})` : `crlfile ${file}`,
    read: () => unlessMissing(readFile(file, 'latin1')), // unreadable is an error, not "no CRL yet"
    async write(crls, pem) {
      await writeFileAtomic(file, pem, 0o644);
      // Each CA of the bundle its link (its CRL is in the file now); the others' go.
      if (hashDir) await syncCrlHashLinks(hashDir, file, new Set(crls.map((c) => crlIssuerHash(c.der))));
    },
  };
}

const isPem = (bytes: Buffer) => bytes.subarray(0, 64).toString('latin1').trimStart().startsWith('-----BEGIN');

export function crlHashDirTarget(dir: string): CrlTarget {
  return {
    description: `CRL hash directory ${dir}`,
    async read() {
      const names = (await unlessMissing(readdir(dir), [] as string[])).filter((n) => /^[0-9a-f]{8}\.r\d+$/.test(n)).sort();
      if (names.length === 0) return null;
      // DER (what this target writes) or PEM (written by an earlier version): the agent's floor reads PEM.
      const files = await Promise.all(names.map((n) => readFile(path.join(dir, n))));
      return files.map((bytes) => (isPem(bytes) ? bytes.toString('latin1') : crlDerToPem(bytes))).join('');
    },
    async write(crls) {
      for (const crl of crls) {
        await writeFileAtomic(path.join(dir, `${crlIssuerHash(crl.der)}.r0`), crl.der, 0o644);
      }
    },
  };
}
