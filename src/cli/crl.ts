import { readFile } from 'node:fs/promises';
import type { VerifiedCrl } from '../crl/verify-crl.ts';
import { writeFileAtomic } from '../support/atomic-file.ts';
import { createApiClient, type ApiClient } from './client/api-client.ts';
import { MissingCredentialsError, readStoredCredentials } from './client/credentials.ts';
import { str } from './client-flags.ts';
import { details, print, relativeTime } from './output.ts';
import { UsageError, type Flags, type FlagSpec, type GroupSpec } from './spec.ts';
import { resolve } from 'node:path';

const urlFlag: FlagSpec = { type: 'string', value: 'URL', help: 'certfleet base URL (default: CERTFLEET_URL, then what "certfleet login" stored); the CRL is public' };
const caFlag: FlagSpec = { type: 'string', value: 'FILE', help: 'verify against this CA certificate (default: the server\'s /pki/ca.pem)' };

/** The CRL endpoints are public: only the URL is needed. */
async function publicClient(flags: Flags): Promise<ApiClient> {
  const url = str(flags.url) || process.env.CERTFLEET_URL || (await readStoredCredentials()).url;
  if (!url) throw new MissingCredentialsError('no certfleet URL: pass --url, set CERTFLEET_URL, or run "certfleet login"');
  return createApiClient({ url });
}

export type CrlCheck = { verified: true; crl: VerifiedCrl } | { verified: false; error: string };

/** Signature, issuer, version, CRL number and nextUpdate checked against the CA (the PKI code is loaded here, not by `certfleet --help`). */
async function checkCrl(der: Uint8Array, caPem: string | Buffer, now = new Date()): Promise<CrlCheck> {
  const [{ caIdentityFromCertificate }, { verifyCrl }] = await Promise.all([import('../pki/crl-signer.ts'), import('../crl/verify-crl.ts')]);
  try {
    const ca = caIdentityFromCertificate(caPem);
    return { verified: true, crl: verifyCrl(der, { caPublicKey: ca.publicKey, issuerNameDer: ca.subjectDer, now }) };
  } catch (e) {
    return { verified: false, error: (e as Error).message };
  }
}

/** The published CRL (DER) and its check against --ca or the server's /pki/ca.pem. */
async function fetchChecked(flags: Flags) {
  const api = await publicClient(flags);
  const der = await api.getBytes('/pki/crl');
  const caFile = str(flags.ca);
  const check = await checkCrl(der, caFile ? await readFile(caFile) : await api.getBytes('/pki/ca.pem'));
  return { der, check, caSource: caFile ?? `${api.baseUrl}/pki/ca.pem` };
}

export const crlGroup: GroupSpec = {
  summary: 'show and fetch the published CRL',
  subcommands: {
    show: {
      summary: 'the latest CRL: number, entries, this and next update, verified against the CA or not',
      flags: { url: urlFlag, ca: caFlag, json: { type: 'boolean', help: 'print JSON' } },
      example: 'certfleet crl show --ca device-ca.crt',
      notes: 'Exit code 1 when the CRL does not verify against the CA (or is past its next update).',
      async run(flags) {
        const { der, check, caSource } = await fetchChecked(flags);
        const { inspect } = await import('./inspect-decode.ts');
        const info = (await inspect(Buffer.from(der), 0)).data as { crl_number: string | null; this_update: string; next_update: string | null; entry_count: number; issuer: string };
        const data = {
          crl_number: info.crl_number,
          entries: info.entry_count,
          this_update: info.this_update,
          next_update: info.next_update,
          issuer: info.issuer,
          verified: check.verified,
          verified_against: caSource,
          ...(check.verified ? {} : { verification_error: check.error }),
        };
        const human = details([
          ['number', data.crl_number],
          ['entries', data.entries],
          ['this update', `${data.this_update} (${relativeTime(data.this_update)})`],
          ['next update', data.next_update ? `${data.next_update} (${relativeTime(data.next_update)})` : null],
          ['issuer', data.issuer],
          ['verified', check.verified ? `yes, against ${data.verified_against}` : `NO: ${check.error}`],
        ]);
        print(flags, human, data);
        return check.verified ? 0 : 1;
      },
    },
    fetch: {
      summary: 'download the latest CRL to a file (written atomically)',
      flags: {
        url: urlFlag,
        out: { type: 'string', value: 'FILE', help: 'where to write it (default device-crl.pem, or device-crl.der with --der)' },
        der: { type: 'boolean', help: 'DER instead of PEM' },
        capath: { type: 'boolean', help: "also link FILE.hash/<CA subject hash>.r0 to it: Mosquitto's capath in broker-config's default CRL layout" },
        ca: caFlag,
        json: { type: 'boolean', help: 'print JSON' },
      },
      example: 'certfleet crl fetch --out /etc/mosquitto/device-crl.pem',
      notes: 'The file is written only if the CRL verifies against the CA; exit code 1 otherwise.',
      async run(flags) {
        if (flags.capath && flags.der) throw new UsageError('--capath needs PEM (Mosquitto reads its capath as PEM): drop --der');
        const { der, check } = await fetchChecked(flags);
        if (!check.verified) {
          console.error(`certfleet crl fetch: not written: ${check.error}`);
          return 1;
        }
        const out = str(flags.out) ?? (flags.der ? 'device-crl.der' : 'device-crl.pem');
        const { crlDerToPem } = await import('../crl/verify-crl.ts');
        await writeFileAtomic(out, flags.der ? der : crlDerToPem(der), 0o644);
        if (flags.capath) {
          const [{ crlHashDirFor, syncCrlHashLinks }, { crlIssuerHash }] = await Promise.all([import('../broker/crl-hash-links.ts'), import('../pki/subject-hash.ts')]);
          await syncCrlHashLinks(crlHashDirFor(resolve(out)), resolve(out), [crlIssuerHash(der)], { prune: false });
        }
        const data = { path: out, crl_number: check.crl.crlNumber.toString(), entries: check.crl.entryCount, next_update: check.crl.nextUpdate.toISOString() };
        print(flags, `CRL ${data.crl_number} (${data.entries} entries, next update ${relativeTime(data.next_update)}) written to ${out}`, data);
        return 0;
      },
    },
  },
};
