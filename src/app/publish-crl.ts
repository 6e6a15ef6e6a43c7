import { createHash, type KeyObject } from 'node:crypto';
import type { Clock } from '../domain/clock.ts';
import { HOUR_MS } from '../domain/clock.ts';
import { buildCrl, createRevokedEntriesEncoder, type CrlSigner, type RevokedEntry } from '../domain/crl/build-crl.ts';
import { crlSignature } from '../domain/crl/complete-crl.ts';
import { REVOCATION_REASONS, reasonCodeFor } from '../domain/revocation-reasons.ts';
import type { CaLintProfile } from '../pki/lint/ca-profile.ts';
import { lintCrl, type CrlLintOptions } from '../pki/lint/crl-lint.ts';
import { runLint } from '../pki/lint/lint-failure.ts';
import { verifyCrl } from '../crl/verify-crl.ts';
import type { Storage, StoredCrlInfo } from './storage-ports.ts';

/** What signing a CRL needs from the Device CA. */
export interface CrlAuthority {
  /** crl_state key: hex of the CA's key identifier. */
  issuerKeyId: string;
  /** device_certificates.issuer of this CA's certificates: the CRL lists only those. */
  issuerLabel: string;
  /** The CA certificate's subject Name, byte-identical. */
  issuerNameDer: Uint8Array;
  /** Goes into the CRL's Authority Key Identifier (the same value the certificates carry). */
  authorityKeyId: Uint8Array;
  publicKey: KeyObject;
  signer: CrlSigner;
  /** The CA as the lint sees it (read by @peculiar/asn1-x509, not by our DER code). */
  lintProfile: CaLintProfile;
}

export interface PublishCrlDeps {
  storage: Storage;
  clock: Clock;
  authority: CrlAuthority;
  settings: {
    /** nextUpdate = thisUpdate + this (CRL_VALIDITY_HOURS, default 168). */
    validityHours: number;
    /** Issuing Distribution Point of the CRL served at that URL: the one the certificates carry now. */
    distributionPointUrl: string;
  };
  /** Test seam: a faulty encoder must be caught by the lint before anything is stored. */
  build?: typeof buildCrl;
}

/**
 * Skip the build when the stored CRL already satisfies all the given conditions (used to
 * coalesce work across replicas); without `unless` a new CRL is always built. Never skipped
 * while a revocation committed after the stored CRL's read is pending (a crash before it was
 * published, a missed notification).
 */
export interface PublishCondition {
  /** Database time: the stored CRL's build began at or after it (so it has every revocation committed before). */
  builtAfter?: Date;
  /** The stored CRL's thisUpdate is younger than this (clock time). */
  youngerThanMs?: number;
}

export interface PublishCrlRequest {
  unless?: PublishCondition;
  /**
   * The new number is greater than this too (e.g. the number in the broker's CRL file), so a
   * database restored from a backup never makes the numbers go backwards for that consumer.
   */
  minNumber?: bigint;
  /**
   * Writes the broker's file variant (`fileDer`, verified) while the database stores the CRL, and
   * without waiting for the commit: a revocation reaches the broker without waiting for the
   * database to store tens of MB. Awaited before the transaction ends; its outcome is not the
   * publication's (a failure there does not roll back the stored CRL). If the store fails, the
   * file holds a number the database does not: harmless, as the next publication numbers above
   * the file's (`minNumber`), and the revocations it lists stay pending until stored.
   */
  writeFile?(crl: { crlNumber: bigint; der: Buffer }): Promise<unknown>;
}

export interface PublishedCrl {
  crlNumber: bigint;
  thisUpdate: Date;
  nextUpdate: Date;
  /** Served at the distribution point URL (/pki/crl): with Issuing Distribution Point. */
  der: Buffer;
  /** For the broker's file (CRL_OUTPUT_PATH): no Issuing Distribution Point, a complete CRL. */
  fileDer: Buffer;
  sha256: string;
  entries: number;
  /**
   * Where the time went (ms): reading + encoding the entries, building + signing and verifying
   * both variants, storing (with the file write, which starts once the file variant is verified).
   */
  timings: { entriesMs: number; signMs: number; verifyMs: number; storeMs: number; totalMs: number };
}

export type PublishCrlResult = { published: true; crl: PublishedCrl; stored: StoredCrlInfo } | { published: false; stored: StoredCrlInfo };

/** reasonCode 8 (removeFromCRL) only means something in a delta CRL: a full CRL lists the certificate as unspecified. */
const REMOVE_FROM_CRL = REVOCATION_REASONS.removeFromCRL;

/**
 * Builds, verifies and stores the next CRL in ONE operator transaction that holds the CA's
 * crl_state row lock (FOR UPDATE) throughout: replicas queue on it, so the number is the
 * stored one + 1 and strictly increasing. The revoked certificates are streamed from the
 * database into the DER entries encoder (never all rows as objects): only this CA's, and an
 * expired one only until it was on one CRL whose thisUpdate is after its notAfter (RFC 5280 3.3).
 * Both CRLs (served, with Issuing Distribution Point; the broker's file, without) must pass
 * verifyCrl (signature with the CA key, issuer, nextUpdate in the future, number above the
 * previous) and the lint (pki/lint: profile, entries sorted and unique) before it is written or
 * stored; otherwise the transaction rolls back and the error is thrown (LINT_FAILED names the rule).
 */
export function createPublishCrl({ storage, clock, authority, settings, build = buildCrl }: PublishCrlDeps) {
  const validityMs = settings.validityHours * HOUR_MS;
  return async (request: PublishCrlRequest = {}): Promise<PublishCrlResult> =>
    storage.asOperator(async (repos) => {
      const started = performance.now();
      const stored = await repos.crl.lockCrlState(authority.issuerKeyId);
      if (
        request.unless &&
        stored.sha256 !== null &&
        satisfied(stored, request.unless, clock.now()) &&
        !(await repos.crl.hasPendingRevocations(authority.issuerLabel))
      ) {
        return { published: false, stored };
      }
      await repos.crl.takePendingRevocations(authority.issuerLabel);

      const thisUpdate = new Date(Math.floor(clock.now().getTime() / 1000) * 1000);
      const nextUpdate = new Date(thisUpdate.getTime() + validityMs);
      const previous = request.minNumber !== undefined && request.minNumber > stored.crlNumber ? request.minNumber : stored.crlNumber;
      const crlNumber = previous + 1n;

      const encoder = createRevokedEntriesEncoder();
      const reasonCodes = new Map<string, number>();
      const entry: RevokedEntry = { serialHex: '', revokedAt: new Date(0), reasonCode: 0 };
      const scope = { issuer: authority.issuerLabel, previousThisUpdate: stored.sha256 !== null ? stored.thisUpdate : null };
      await repos.crl.forEachRevokedCertificate(scope, (serialHex, revokedAtMs, reason) => {
        let code = reasonCodes.get(reason);
        if (code === undefined) {
          code = reasonCodeFor(reason);
          if (code === REMOVE_FROM_CRL) code = 0;
          reasonCodes.set(reason, code);
        }
        entry.serialHex = serialHex;
        entry.revokedAt.setTime(revokedAtMs);
        entry.reasonCode = code;
        encoder.add(entry);
      });
      const entries = encoder.count;
      const revoked = encoder.finish(); // in serial order
      const entriesDone = performance.now();

      // The same entries, signed twice. The broker's file has no Issuing Distribution Point, so it
      // covers every certificate of the CA whatever distribution point it carries (a certificate
      // issued before a PUBLIC_BASE_URL change, an imported one), and OpenSSL never answers
      // "different CRL scope". The CRL served at the distribution point URL carries that URL as
      // Issuing Distribution Point (EMQX enforces only such CRLs).
      const fields = {
        issuerNameDer: authority.issuerNameDer,
        authorityKeyId: authority.authorityKeyId,
        thisUpdate,
        nextUpdate,
        crlNumber,
        revoked,
        signer: authority.signer,
      };
      let signMs = 0;
      let verifyMs = 0;
      const signed = (distributionPointUrl?: string): Buffer => {
        const from = performance.now();
        const crl = build(distributionPointUrl === undefined ? fields : { ...fields, distributionPointUrl });
        signMs += performance.now() - from;
        return crl;
      };
      const checked = (crl: Buffer, entriesLike?: CrlLintOptions['entriesLike']) => {
        const from = performance.now();
        const linted = runLint(() => lintCrl(crl, { ca: authority.lintProfile, previousNumber: previous, entriesLike }));
        const verified = verifyCrl(crl, { caPublicKey: authority.publicKey, now: clock.now(), previousNumber: previous, issuerNameDer: authority.issuerNameDer });
        if (verified.entryCount !== entries || linted.entries !== entries) throw new Error(`CRL has ${verified.entryCount} entries, expected ${entries}`);
        verifyMs += performance.now() - from;
      };

      const fileDer = signed();
      checked(fileDer);
      const der = signed(settings.distributionPointUrl);
      // Its entries are the file variant's, byte for byte: the lint reads them once.
      checked(der, { der: fileDer, entries });
      const sha256 = createHash('sha256').update(der).digest('hex');
      const storeStarted = performance.now();
      const storing = repos.crl.saveCrl(authority.issuerKeyId, {
        crlNumber,
        thisUpdate,
        nextUpdate,
        der,
        fileSignature: crlSignature(fileDer),
        sha256,
        entries,
        publishedAt: clock.now(),
      });
      // While the database stores tens of MB, this process encodes and writes the file.
      const fileWrite = request.writeFile?.({ crlNumber, der: fileDer }).catch(() => undefined);
      let saved: StoredCrlInfo;
      try {
        saved = await storing;
      } finally {
        await fileWrite;
      }
      const done = performance.now();
      return {
        published: true,
        stored: saved,
        crl: {
          crlNumber,
          thisUpdate,
          nextUpdate,
          der,
          fileDer,
          sha256,
          entries,
          timings: { entriesMs: entriesDone - started, signMs, verifyMs, storeMs: done - storeStarted, totalMs: done - started },
        },
      };
    });
}

export type PublishCrl = ReturnType<typeof createPublishCrl>;

function satisfied(stored: StoredCrlInfo, unless: PublishCondition, now: Date): boolean {
  if (unless.builtAfter !== undefined && !(stored.builtAt && stored.builtAt.getTime() >= unless.builtAfter.getTime())) return false;
  if (unless.youngerThanMs !== undefined) {
    if (!stored.thisUpdate || now.getTime() - stored.thisUpdate.getTime() >= unless.youngerThanMs) return false;
  }
  // Never keep a CRL whose nextUpdate is within the refresh margin (past it, Mosquitto refuses every client).
  return stored.nextUpdate !== null && stored.nextUpdate.getTime() - now.getTime() > (unless.youngerThanMs ?? 0);
}
