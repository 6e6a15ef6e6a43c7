/**
 * The CRL pipeline of one issuing CA, top to bottom (Boulder's updater → storage → CA → storer):
 *
 *   1 read    lock the CA's crl_state row, stream its revoked certificates into DER entries
 *   2 build   the TBSCertList, pure (build-crl.ts): the broker file's variant first, then the served one
 *   3 lint    a copy signed by a throwaway key of the CA's algorithm (pki/lint/crl-lint.ts); entries
 *             carried over from the CRL linted last are compared with it, not linted again
 *   4 sign    with the CA key: only what passed the lint
 *   5 verify  parse it back and verify it with the CA public key (verify-crl.ts)
 *   7 file    the file variant, atomically, as soon as it is verified (crl-file-sync.ts); only once
 *             it is renamed into place does the served variant go through 2-5: BEFORE the commit, see below
 *   6 store   both in crl_state, in the transaction that holds the row lock (the Storage port)
 *   8 reload  the broker (crl-file-sync.ts → broker/broker-reloader.ts): signalled right after the
 *             file's rename, awaited after the commit (the row lock is not held meanwhile)
 *   9 close   the live sessions of the newly revoked certificates (broker/revoked-sessions.ts)
 *
 * Stages 1-7 are `createPublishCrl` (one operator transaction), which also awaits 8 once committed;
 * `createCrlPipeline` adds 9 and the file sync (7-9) of a CRL another replica stored. When it runs (revocations, the periodic refresh,
 * other replicas' events, retries) is crl-publisher.ts's business; the composition root only
 * constructs both (composition/crl.ts).
 *
 * Everything is keyed by the issuing CA (`CrlAuthority.issuerKeyId`, the crl_state row): one
 * pipeline per CA. The build stage is pure and takes the entries as encoded bytes, so previous
 * entries kept in memory can be merged in later; a run's result carries the serials and CNs it
 * newly revoked, for the session step and any other consumer.
 *
 * File before commit (the one decision on ordering): the broker's file is written as soon as
 * its variant is verified; the served variant is made once it is in place, and the database stores the CRL (tens of MB at a million
 * entries), and the transaction ends only once the write settled. A revocation so reaches the
 * broker without waiting for the store. If the store then fails, the file holds a number the
 * database does not: harmless, the next publication numbers above the file's (its number is a
 * floor, `minNumber`) and the revocations stay pending until stored. A crash at any point leaves
 * the previous file or the new one, both valid (test/crl-publish.test.ts, test/crl-crash.test.ts).
 */
import { createHash, webcrypto, type KeyObject } from 'node:crypto';
import { inThreadPool } from '../support/crypto-pool.ts';
import type { Counter } from 'prom-client';
import type { RevokedEntriesScope, StoredCrlInfo, Storage } from '../app/storage-ports.ts';
import { SYSTEM_TENANT, type AlertType } from '../domain/alert.ts';
import { SEVERITY } from '../domain/expiry-policy.ts';
import type { Config } from '../config.ts';
import { HOUR_MS, type Clock } from '../domain/clock.ts';
import { REVOCATION_REASONS, reasonCodeFor } from '../domain/revocation-reasons.ts';
import { caIdentityFromCertificate, throwawaySignerFor } from '../pki/crl-signer.ts';
import { crlSignerFor } from '../pki/kms/key-signer.ts';
import type { DeviceCa } from '../pki/device-ca.ts';
import { caLintProfile, type CaLintProfile } from '../pki/lint/ca-profile.ts';
import { lintCrl, type CrlLintOptions } from '../pki/lint/crl-lint.ts';
import { runLint } from '../pki/lint/lint-failure.ts';
import type { RevokedSessions } from '../broker/revoked-sessions.ts';
import type { Logger } from '../support/logger.ts';
import {
  completeCrlOf,
  createRevokedEntriesEncoder,
  crlSignature,
  newlyRevokedSerials,
  prepareCrl,
  revokedList,
  type CrlSigner,
  type RevokedEntry,
  type SortedEntries,
  type TbsInput,
} from './build-crl.ts';
import { fileEntriesOf, fileSpaceOf, mergeEntries, mergeFileEntries, spaceOf, type FileEntries, type FileSpace, type MergeResult, type MergeSpace } from './incremental-entries.ts';
import type { CrlFileSync, CrlFileSyncResult } from './crl-file-sync.ts';
import { createCrlBufferPool, type CrlBufferLease, type CrlBufferPool } from './crl-buffers.ts';
import { verifyCrlAsync } from './verify-crl.ts';

// ---------------------------------------------------------------------------------------------
// The issuing CA
// ---------------------------------------------------------------------------------------------

/** What the pipeline needs from one issuing CA. */
export interface CrlAuthority {
  /** crl_state key: hex of the CA's key identifier. Every stage is keyed by it. */
  issuerKeyId: string;
  /** device_certificates.issuer of this CA's certificates: the CRL lists only those. */
  issuerLabel: string;
  /** The CA certificate's subject Name, byte-identical. */
  issuerNameDer: Uint8Array;
  /** Goes into the CRL's Authority Key Identifier (the same value the certificates carry). */
  authorityKeyId: Uint8Array;
  publicKey: KeyObject;
  /** The CA key. */
  signer: CrlSigner;
  /** A throwaway key of the CA key's algorithm: signs the copy the lint reads. */
  lintSigner: CrlSigner;
  /** The CA as the lint sees it (read by @peculiar/asn1-x509, not by our DER code). */
  lintProfile: CaLintProfile;
}

/** The CRL URL of PUBLIC_BASE_URL: certificates carry it as CRL DP, the CRL served there as Issuing Distribution Point. */
export const crlDistributionPointUrl = (config: Pick<Config, 'publicBaseUrl'>): string => `${config.publicBaseUrl}/pki/crl`;

export function crlAuthorityFor(ca: DeviceCa): CrlAuthority {
  const identity = caIdentityFromCertificate(ca.certDer);
  return {
    issuerKeyId: identity.subjectKeyId.toString('hex'),
    issuerLabel: ca.issuerLabel,
    issuerNameDer: identity.subjectDer,
    authorityKeyId: identity.subjectKeyId,
    publicKey: ca.publicKey,
    signer: crlSignerFor(ca.signer),
    lintSigner: lintCopySigner(throwawaySignerFor(ca.signer.publicKey)),
    lintProfile: caLintProfile(ca.certDer),
  };
}

/**
 * The signer of the copy the lint reads: the throwaway key's signature over a fixed message, made
 * once and then placed in every copy, instead of a signature over each TBS (which would hash the
 * whole CRL, tens of MB at a million entries, once more per variant for nothing). The lint never
 * checks the signature value (crl-lint.ts: verifyCrl does, on the CA-signed CRL, right after), only
 * that a signatureValue BIT STRING follows the algorithm: this one has the exact form and size of
 * a throwaway signature of the CA key's algorithm, and the CA key still signs nothing before the
 * lint passed.
 */
export function lintCopySigner(throwaway: CrlSigner): CrlSigner {
  let made: Promise<Uint8Array> | null = null;
  let value: Uint8Array | null = null;
  const message = Buffer.from('certfleet CRL lint copy');
  return {
    algorithmIdentifierDer: throwaway.algorithmIdentifierDer,
    sign: () => (value ??= throwaway.sign(message)),
    signAsync: async () => {
      if (value) return value;
      made ??= throwaway.signAsync ? throwaway.signAsync(message) : Promise.resolve(throwaway.sign(message));
      try {
        return (value = await made);
      } catch (error) {
        made = null;
        throw error;
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Stages 1-7: one operator transaction
// ---------------------------------------------------------------------------------------------

export interface PublishCrlDeps {
  storage: Storage;
  clock: Clock;
  authority: CrlAuthority;
  settings: {
    /** nextUpdate = thisUpdate + this (CRL_VALIDITY_HOURS, default 168). */
    validityHours: number;
    /** Issuing Distribution Point of the CRL served at that URL: the one the certificates carry now. */
    distributionPointUrl: string;
    /**
     * An incremental publication at least this long after the last full read reads every entry
     * again and compares (CRL_FULL_REBUILD_MINUTES, default 60): the self-check. 0: every
     * publication reads every entry (no entries kept in memory).
     */
    fullRebuildMs?: number;
  };
  /** Stage 7: the broker's file (null or absent: this process keeps none, e.g. a test or an API replica). */
  file?: CrlFileSync | null;
  /** Test seam for stage 2: a faulty encoder must be caught by the lint before the CA key signs anything. */
  prepare?: typeof prepareCrl;
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
   * Merge the revocations taken into the CA's entries kept in memory instead of reading every
   * entry (falls back to the full read whenever memory could be wrong: nothing kept yet, another
   * replica or a failed run stored since, a pending mark without a serial, the self-check due).
   */
  incremental?: boolean;
  /** The new number is greater than this too (besides the stored one and the broker file's claim). */
  minNumber?: bigint;
  /**
   * Told as soon as the new CRL is committed, before the local broker's reload is awaited (the
   * other replicas' NOTIFY, the broker agents' bundle, the HTTP cache need not wait for it).
   */
  onStored?(crl: PublishedCrl): void;
}

export interface PublishedCrl {
  issuerKeyId: string;
  crlNumber: bigint;
  thisUpdate: Date;
  nextUpdate: Date;
  /** Served at the distribution point URL (/pki/crl): with Issuing Distribution Point. */
  der: Buffer;
  /**
   * For the broker's file (CRL_OUTPUT_PATH): no Issuing Distribution Point, a complete CRL. Made
   * on first read (the publication built it in memory it reuses): read it only when needed.
   */
  readonly fileDer: Buffer;
  sha256: string;
  entries: number;
  /**
   * Where the time went (ms): reading + encoding the entries, building, linting and signing both
   * variants, verifying them, storing (with the file write, which starts once both are verified).
   */
  timings: { entriesMs: number; signMs: number; lintMs: number; verifyMs: number; storeMs: number; totalMs: number };
  /**
   * How the entries were obtained: `full` read from the database; `incremental` merged into the
   * entries kept in memory; `checked` both, compared byte for byte (the full read is published).
   */
  build: {
    mode: 'full' | 'incremental' | 'checked';
    read: number;
    inserted: number;
    dropped: number;
    mismatch: boolean;
    /** The broker file list kept in memory could not be merged (inconsistent): every entry was stripped afresh instead. */
    fileMergeFallback: boolean;
  };
}

/** Stage 7's outcome, settled before the transaction ended (null: no file stage). */
export type FileOutcome = { result: CrlFileSyncResult; atMs: number } | { error: Error; atMs: number } | null;

export type PublishCrlResult =
  | { published: true; crl: PublishedCrl; stored: StoredCrlInfo; file: FileOutcome }
  | { published: false; stored: StoredCrlInfo; file: null };

/** reasonCode 8 (removeFromCRL) only means something in a delta CRL: a full CRL lists the certificate as unspecified. */
const REMOVE_FROM_CRL = REVOCATION_REASONS.removeFromCRL;

/**
 * Builds, lints, signs, verifies and stores the next CRL in ONE operator transaction that holds
 * the CA's crl_state row lock (FOR UPDATE) throughout: replicas queue on it, so the number
 * (nextCrlNumber: thisUpdate in ms, or above the stored one, the broker file's and the reconciled
 * floor) is strictly increasing. Any failure before the
 * store rolls everything back and is thrown (LINT_FAILED names the rule; CrlVerificationError).
 */
export function createPublishCrl(deps: PublishCrlDeps) {
  const { storage, clock, authority, settings } = deps;
  const validityMs = settings.validityHours * HOUR_MS;
  const prepare = deps.prepare ?? prepareCrl;
  const fullRebuildMs = settings.fullRebuildMs ?? DEFAULT_FULL_REBUILD_MS;
  /**
   * This CA's (authority.issuerKeyId's) entries as this process last stored them, or null: valid
   * only while crl_state still holds that CRL (number and sha256), checked under the row lock.
   */
  let memory: EntriesMemory | null = null;
  /**
   * Where the broker file's CRL is built (crl-buffers.ts): the buffer of the CRL kept in memory
   * (`memory.file.list` is a view into it, which the next run reads) and one other, reused.
   */
  const fileBuffers = createCrlBufferPool();
  const run = async (request: PublishCrlRequest): Promise<PublishCrlResult> => {
    let kept: EntriesMemory | null = null;
    reloadAfterFailure = Promise.resolve();
    const fileBuffer = fileBufferOf(fileBuffers);
    try {
      const result = await transaction(request, memory, (next) => (kept = next), fileBuffer);
      // Only once committed: a failed store or commit leaves memory null (the next run reads everything).
      if (result.published) memory = kept;
      // Its buffer stays untouched until a later CRL is kept (a failed run's is reused by the next one).
      if (result.published) fileBuffer.keep();
      if (result.published) request.onStored?.(result.crl);
      // 8 reload: signalled as soon as the file was in place, awaited only now, after the commit
      // (the row lock is not held while the broker reloads, up to the large-CRL bound).
      if (result.published && result.file && 'result' in result.file && result.file.result.reloading) {
        const { reloading, ...written } = result.file.result;
        return { ...result, file: { ...result.file, result: { ...written, ...(await reloading) } } };
      }
      return result;
    } catch (error) {
      memory = null;
      // A reload signalled for a file written before the failure is still awaited here, as a successful run awaits it.
      await reloadAfterFailure;
      throw error;
    } finally {
      fileBuffer.release(); // nothing once kept
    }
  };
  /** Set by a run whose file was written: its broker reload, settled (never rejects). */
  let reloadAfterFailure: Promise<unknown> = Promise.resolve();
  const transaction = async (
    request: PublishCrlRequest,
    memory: EntriesMemory | null,
    keep: (next: EntriesMemory | null) => void,
    fileBuffer: FileCrlBuffer,
  ): Promise<PublishCrlResult> => {
    // The file's number is a floor: with a database restored from an older backup, numbers still go up for the broker.
    const claimed = (await deps.file?.claimedNumber()) ?? null;
    const floor = [request.minNumber, claimed].reduce<bigint | undefined>((a, b) => (b != null && (a === undefined || b > a) ? b : a), undefined);
    return storage.asOperator(async (repos) => {
      const started = performance.now();
      // 1 read
      const stored = await repos.crl.lockCrlState(authority.issuerKeyId);
      if (request.unless && stored.sha256 !== null && satisfied(stored, request.unless, clock.now()) && !(await repos.crl.hasPendingRevocations(authority.issuerLabel))) {
        return { published: false, stored, file: null };
      }
      const taken = await repos.crl.takePendingRevocations(authority.issuerLabel);
      const thisUpdate = new Date(Math.floor(clock.now().getTime() / 1000) * 1000);
      const nextUpdate = new Date(thisUpdate.getTime() + validityMs);
      const previous = [floor, stored.numberFloor].reduce<bigint>((a, b) => (b != null && b > a ? b : a), stored.crlNumber);
      const crlNumber = nextCrlNumber(previous, thisUpdate);
      const scope = { issuer: authority.issuerLabel, previousThisUpdate: stored.sha256 !== null ? stored.thisUpdate : null };
      // The entries kept in memory stand for the stored CRL only if it is still the one this process stored.
      const current = memory && fullRebuildMs > 0 && stored.sha256 === memory.sha256 && stored.crlNumber === memory.crlNumber ? memory : null;
      const mode: PublishedCrl['build']['mode'] =
        !request.incremental || !current || taken.unnamed ? 'full' : clock.now().getTime() - current.fullReadAt >= fullRebuildMs ? 'checked' : 'incremental';
      const build: PublishedCrl['build'] = { mode, read: 0, inserted: 0, dropped: 0, mismatch: false, fileMergeFallback: false };
      /** The kept entries (served, or the broker file's) differ from a full read: a HIGH system alert; the full read is what gets published. */
      const raiseMismatch = async (summary: string, details: Record<string, unknown>) => {
        build.mismatch = true;
        await repos.alerts.raiseSystemAlert({
          tenantId: SYSTEM_TENANT,
          type: CRL_INCREMENTAL_MISMATCH_ALERT,
          fingerprint: `crl-incremental:${authority.issuerKeyId}`,
          severity: SEVERITY.HIGH,
          summary,
          details: { issuer_key_id: authority.issuerKeyId, ...details, crl_number: crlNumber.toString() },
          now: clock.now(),
        });
      };
      let sorted: SortedEntries & { count?: number };
      let merged: MergeResult | null = null;
      if (current && mode !== 'full') {
        const added = await readEntriesOf(repos.crl, scope, taken.serials);
        const previousThisUpdate = scope.previousThisUpdate ? Math.floor(scope.previousThisUpdate.getTime() / 1000) : null;
        merged = mergeEntries(current.entries, added, previousThisUpdate, current.spare);
        build.read = added.offsets.length;
      }
      if (mode === 'incremental' && merged) {
        sorted = merged.entries;
        build.inserted = merged.inserted;
        build.dropped = merged.dropped;
      } else {
        sorted = await readEntries(repos.crl, authority, scope, fullRebuildMs > 0);
        build.read = sorted.count ?? sorted.offsets.length;
        if (merged && !merged.entries.bytes.equals(sorted.bytes)) {
          await raiseMismatch(
            `The CRL entries kept in memory (${merged.entries.offsets.length}) differ from a full read of the database (${sorted.offsets.length}): ` +
              'a revocation or an expiry reached the database without a pending mark naming it. The full read was published; revocations may have reached the broker late.',
            { in_memory: merged.entries.offsets.length, in_database: sorted.offsets.length },
          );
        }
      }
      const revoked = sorted.bytes;
      const entries = sorted.count ?? sorted.offsets.length;
      // The broker file's entries (no crlEntryExtensions): an incremental run copies the runs it
      // carried over from the previous file list and strips only the new entries; otherwise every
      // entry is stripped (one pass). The self-check compares the two forms as it does the served ones.
      const fileMemory = current?.file && current.file.offsets.length === current.entries.offsets.length ? current.file : null;
      let fileList: { entries: FileEntries; carried: Uint32Array | null } | null = null;
      if (mode === 'incremental' && merged && current && fileMemory) {
        try {
          fileList = mergeFileEntries(current.entries, fileMemory, merged, current.fileSpare);
        } catch {
          fileList = null; // memory is not what it claims: strip every entry (said in the crl_published log line)
          build.fileMergeFallback = true;
        }
      }
      if (!fileList) {
        const stripped = fileEntriesOf(sorted.bytes, entries, current?.fileSpare);
        if (mode === 'checked' && merged && current && fileMemory && !build.mismatch) {
          let mergedFile: FileEntries | null = null;
          try {
            mergedFile = mergeFileEntries(current.entries, fileMemory, merged).entries;
          } catch {
            mergedFile = null;
          }
          if (!mergedFile || !mergedFile.bytes.equals(stripped.bytes)) {
            await raiseMismatch(
              "The broker file's CRL entries kept in memory differ from the entries of a full read of the database without their extensions: " +
                'the full read was published; revocations may have reached the broker late.',
              { variant: 'file', in_memory: mergedFile?.offsets.length ?? null, in_database: stripped.offsets.length },
            );
          }
        }
        fileList = { entries: stripped, carried: null };
      }
      const entriesDone = performance.now();

      // 2 build, 3 lint (throwaway key), 4 sign (CA key), 5 verify: the broker file's variant first,
      // then 7 its file written while the served variant goes through 2-5 and 6 the store.
      const fields: TbsInput = {
        issuerNameDer: authority.issuerNameDer,
        authorityKeyId: authority.authorityKeyId,
        thisUpdate,
        nextUpdate,
        crlNumber,
        revoked,
        algorithmIdentifierDer: authority.signer.algorithmIdentifierDer,
      };
      const fileEntries = fileList.entries;
      const variant = { prepare, authority, previous, entries, now: clock.now() };
      const lintOptions = { ca: authority.lintProfile, previousNumber: previous };
      // Entries carried over from the CRL this process linted last are compared with it, not linted
      // again (crl-lint.ts, CarriedEntries): each variant against its own previous list.
      const carried =
        mode === 'incremental' && merged && current?.linted && current.linted.thisUpdateMs <= thisUpdate.getTime() && current.linted.list.length === current.entries.bytes.length
          ? { previous: current.linted.list, runs: merged.carried, ...(current.linted.offsets ? { previousOffsets: current.linted.offsets } : {}) }
          : undefined;
      const fileCarried =
        mode === 'incremental' && fileList.carried && fileMemory && fileMemory.thisUpdateMs <= thisUpdate.getTime()
          ? { previous: fileMemory.list, runs: fileList.carried, previousOffsets: fileMemory.offsets }
          : undefined;
      // The entries' offsets (kept for the next merge) are checked by this lint, so the next one can rely on them.
      const offsets = sorted.offsets.length === entries ? sorted.offsets : undefined;
      // Built into reused memory (fileBuffer): the file CRL leaves this run only as bytes copied
      // from it (the PEM file, the stored signature) or as PublishedCrl.fileDer (made on demand).
      const fileUnverified = await signedUnverified(
        variant,
        { ...fields, revoked: fileEntries.bytes },
        { ...lintOptions, carried: fileCarried, offsets: fileEntries.offsets },
        fileBuffer.space,
      );
      const fileDer = fileUnverified.der;
      const fileSignature = crlSignature(fileDer);
      // The file's PEM is made and written while the signature is verified in the thread pool; the
      // rename waits for the verification, and so does this transaction (below): a CRL whose
      // verification fails is neither in place nor stored.
      const fileVerifyStarted = performance.now();
      const fileVerified = fileUnverified.verifying.then(() => performance.now() - fileVerifyStarted);
      fileVerified.catch(() => undefined);
      // Resolved once the file is renamed into place (the broker signalled): the served variant starts then.
      let fileInPlace!: () => void;
      const inPlace = new Promise<void>((resolve) => (fileInPlace = resolve));
      const fileWrite: Promise<FileOutcome> = deps.file
        ? deps.file.sync({ crlNumber, der: fileDer, verified: fileVerified, deferReload: true, onInPlace: fileInPlace }).then(
            (result) => {
              if (result.reloading) reloadAfterFailure = result.reloading;
              return { result, atMs: performance.now() - started };
            },
            (error: Error) => ({ error, atMs: performance.now() - started }),
          )
        : Promise.resolve(null);
      let saved: StoredCrlInfo;
      let der: Buffer;
      let sha256: string;
      let verified: number;
      let servedSigned: Awaited<ReturnType<typeof signedVariant>>;
      let fileSigned: { signMs: number; lintMs: number; verifyMs: number };
      try {
        fileSigned = { signMs: fileUnverified.signMs, lintMs: fileUnverified.lintMs, verifyMs: await fileVerified };
        // The served variant only once the file is in place (renamed, the broker signalled) or its
        // write settled otherwise (nothing to write, a failure: the store does not happen then
        // either). Its build, lint, CA signature and verification are synchronous blocks on this
        // thread (over 100 ms at a million entries) that the file's write, fsync and rename would
        // otherwise wait behind, each of their thread-pool callbacks needing a turn of this
        // thread: the revocation reaches the broker first, the served CRL and the store follow.
        await Promise.race([inPlace, fileWrite]);
        // The served variant keeps the entries' reason codes: its own lint (carried runs against the served CRL linted before).
        servedSigned = await signedVariant(variant, { ...fields, distributionPointUrl: settings.distributionPointUrl }, { ...lintOptions, carried, offsets });
        der = servedSigned.der;
        verified = performance.now();
        // 6 store (the file write above goes on meanwhile; the transaction ends only once it settled)
        // In the thread pool (WebCrypto's digest) up to 32 MiB; above, WebCrypto's copy of the input
        // (a fresh mmap: its page faults) costs this thread more than hashing in place (crypto-pool.ts).
        sha256 = inThreadPool(der.length) ? Buffer.from(await webcrypto.subtle.digest('SHA-256', der)).toString('hex') : createHash('sha256').update(der).digest('hex');
        saved = await repos.crl.saveCrl(authority.issuerKeyId, {
          crlNumber,
          thisUpdate,
          nextUpdate,
          der,
          fileSignature,
          fileWithoutEntryExtensions: true,
          sha256,
          entries,
          publishedAt: clock.now(),
        });
      } finally {
        await fileWrite;
      }
      const signed = {
        signMs: fileSigned.signMs + servedSigned.signMs,
        lintMs: fileSigned.lintMs + servedSigned.lintMs,
        verifyMs: fileSigned.verifyMs + servedSigned.verifyMs,
      };
      const done = performance.now();
      keep(
        fullRebuildMs > 0
          ? {
              crlNumber,
              sha256,
              entries: sorted,
              // The list replaced is written over by the next merge (only memory a merge allocated: never a shared pool).
              spare: mode !== 'full' && current?.merged ? spaceOf(current.entries) : (current?.spare ?? null),
              merged: mode === 'incremental',
              fullReadAt: mode === 'incremental' && current ? current.fullReadAt : clock.now().getTime(),
              linted: lintedListOf(der, thisUpdate, servedSigned.offsetsChecked && offsets ? offsets : null),
              // The file list's offsets only once its lint checked them (the next file lint relies on them).
              file: fileUnverified.offsetsChecked ? { ...lintedListOf(fileDer, thisUpdate, fileEntries.offsets), offsets: fileEntries.offsets } : null,
              // The file list's bytes are a scratch copy (prepareCrl copied them into the file CRL, which the next merge reads):
              // one buffer serves every run; only the offsets alternate (the next merge reads these and writes the others).
              fileSpace: fileSpaceOf(fileEntries),
              fileSpare: { bytes: fileSpaceOf(fileEntries).bytes, offsets: current?.fileSpace.offsets ?? new Uint32Array(0) },
            }
          : null,
      );
      const servedDer = der;
      let fileDerCopy: Buffer | null = null;
      return {
        published: true,
        stored: saved,
        file: await fileWrite,
        crl: {
          issuerKeyId: authority.issuerKeyId,
          crlNumber,
          thisUpdate,
          nextUpdate,
          der,
          // The bytes built, copied while their buffer still holds them; later, the same CRL made
          // again from the served one and the file signature (what loadStoredFileCrl does).
          get fileDer() {
            fileDerCopy ??= fileBuffer.intact ? Buffer.from(fileDer) : completeCrlOf(servedDer, fileSignature, { withoutEntryExtensions: true });
            return fileDerCopy;
          },
          sha256,
          entries,
          build,
          timings: {
            entriesMs: entriesDone - started,
            signMs: signed.signMs,
            lintMs: signed.lintMs,
            verifyMs: signed.verifyMs,
            storeMs: done - verified,
            totalMs: done - started,
          },
        },
      };
    });
  };
  return (request: PublishCrlRequest = {}) => run(request);
}

/** The memory one run builds the broker file's CRL in: a lease of the publisher's pool, taken when the CRL is built. */
interface FileCrlBuffer {
  space(bytes: number): Buffer;
  /** The CRL built is still in that memory (true when none was leased: it got a buffer of its own). */
  readonly intact: boolean;
  keep(): void;
  release(): void;
}

function fileBufferOf(pool: CrlBufferPool): FileCrlBuffer {
  let lease: CrlBufferLease | null = null;
  return {
    space(bytes) {
      lease?.release();
      lease = pool.lease(bytes);
      return lease.bytes;
    },
    get intact() {
      return lease?.intact ?? true;
    },
    keep: () => lease?.keep(),
    release: () => lease?.release(),
  };
}

/** The entries this process last stored for one CA (crl_state row), and for which CRL. */
interface EntriesMemory {
  crlNumber: bigint;
  sha256: string;
  entries: SortedEntries;
  /** Memory the next merge writes into (a list no longer current), or null. */
  spare: MergeSpace | null;
  /** `entries` was written by a merge (its memory may become the next spare; a full read's may come from a shared pool). */
  merged: boolean;
  /** Clock time of the last full read these entries descend from. */
  fullReadAt: number;
  /**
   * The list contents (revokedCertificates' entries) of the file variant stored with them: a view
   * into the very buffer the lint read (its copy was signed in place by the CA key afterwards; the
   * TBS bytes are never written again), equal to `entries.bytes` byte for byte at that time, and
   * that CRL's thisUpdate. The next incremental lint compares its carried runs with it.
   */
  linted: { list: Uint8Array; thisUpdateMs: number; offsets: Uint32Array | null } | null;
  /**
   * The same for the broker file variant's list (the entries without crlEntryExtensions), with
   * where each of `entries`' entries starts in it (checked by that lint); null: not checked.
   */
  file: { list: Uint8Array; thisUpdateMs: number; offsets: Uint32Array } | null;
  /** The memory the file list's offsets (and its scratch bytes) are in. */
  fileSpace: FileSpace;
  /** Memory the next run writes the file list into: the same scratch bytes, the offsets of the list before. */
  fileSpare: FileSpace | null;
}

/** The revokedCertificates contents of a CRL we built (empty when it lists nothing). */
function lintedListOf(fileDer: Buffer, thisUpdate: Date, offsets: Uint32Array | null): NonNullable<EntriesMemory['linted']> {
  const list = revokedList(fileDer);
  return { list: list ? fileDer.subarray(list.valueStart, list.end) : fileDer.subarray(0, 0), thisUpdateMs: thisUpdate.getTime(), offsets };
}

/** CRL_FULL_REBUILD_MINUTES' default. */
export const DEFAULT_FULL_REBUILD_MS = HOUR_MS;

/** The alert raised when the entries kept in memory differ from a full read (the full read is published). */
export const CRL_INCREMENTAL_MISMATCH_ALERT: AlertType = 'CRL_INCREMENTAL_MISMATCH';

export type PublishCrl = ReturnType<typeof createPublishCrl>;

/**
 * The next CRL Number (Boulder's approach): thisUpdate in milliseconds since the epoch, or one above
 * the previous number when that is not greater. Numbers so keep increasing across a database
 * restored from an older backup even when no later CRL is found to reconcile with (the stored
 * number went back, the clock did not), and stay far below the 20-octet limit.
 */
export function nextCrlNumber(previous: bigint, thisUpdate: Date): bigint {
  const fromTime = BigInt(thisUpdate.getTime());
  return fromTime > previous ? fromTime : previous + 1n;
}

/**
 * Stage 1: the CA's revoked certificates, streamed from the database into the DER entries
 * encoder (never all rows as objects): only this CA's, and an expired one only until it was on
 * one CRL whose thisUpdate is after its notAfter (RFC 5280 3.3). Returns them in serial order.
 */
type CrlRepos = Parameters<Parameters<Storage['asOperator']>[0]>[0]['crl'];

/** Feeds rows as the repository reads them into an encoder that keeps each entry's times. */
function entryFeeder(times = true) {
  const encoder = createRevokedEntriesEncoder({ times });
  const reasonCodes = new Map<string, number>();
  const entry: RevokedEntry = { serialHex: '', revokedAt: new Date(0), reasonCode: 0, notAfterMs: 0 };
  const onEntry = (serialHex: string, revokedAtMs: number, reason: string, notAfterMs: number) => {
    let code = reasonCodes.get(reason);
    if (code === undefined) {
      code = reasonCodeFor(reason);
      if (code === REMOVE_FROM_CRL) code = 0;
      reasonCodes.set(reason, code);
    }
    entry.serialHex = serialHex;
    entry.revokedAt.setTime(revokedAtMs);
    entry.reasonCode = code;
    entry.notAfterMs = notAfterMs;
    encoder.add(entry);
  };
  return { encoder, onEntry };
}

/** Every entry of the CA; `times` (kept in memory afterwards): with each entry's offset and times, otherwise only the bytes (a one-shot process). */
async function readEntries(crl: CrlRepos, authority: CrlAuthority, scope: RevokedEntriesScope, times: boolean): Promise<SortedEntries & { count?: number }> {
  const { encoder, onEntry } = entryFeeder(times);
  // The entries stored encoded (migration 035) are copied as they are; the others are encoded here.
  await crl.forEachRevokedEntry(scope, (der, start, end, revokedAt, notAfter) => encoder.addEncoded(der, start, end, revokedAt, notAfter), onEntry);
  // Revocations of certificates a restored database does not know, kept from a reconciled CRL (reconcile-crl.ts).
  await crl.forEachRestoredRevocation(authority.issuerLabel, onEntry);
  // A root CA's CRL: its revoked and retired intermediates (nothing for a device-issuing CA).
  await crl.forEachEndedIntermediate(authority.issuerLabel, onEntry);
  if (times) return encoder.finishSorted();
  const count = encoder.count;
  // Only the bytes and the count are used when nothing is kept.
  return { bytes: encoder.finish(), offsets: new Uint32Array(0), revokedAt: new Float64Array(0), notAfter: new Float64Array(0), count };
}

/** The entries of these serials only (the revocations whose pending marks a build took), sorted. */
async function readEntriesOf(crl: CrlRepos, scope: RevokedEntriesScope, serials: string[]): Promise<SortedEntries> {
  const { encoder, onEntry } = entryFeeder();
  await crl.forEachRevokedCertificateOf(scope, serials, onEntry);
  return encoder.finishSorted();
}

/**
 * Stages 2-5 for one variant. Build (pure); lint a copy signed by the throwaway key; only then does
 * the CA key sign (in place: the entries are not copied again); then it is parsed back and verified
 * with the CA public key. A publication makes two variants of the same entries: the broker's file
 * has no Issuing Distribution Point, so it covers every certificate of the CA whatever distribution
 * point it carries (a certificate issued before a PUBLIC_BASE_URL change, an imported one) and
 * OpenSSL never answers "different CRL scope"; the CRL served at the distribution point URL
 * carries that URL (EMQX enforces only such CRLs). The file's goes first: the broker gets it while
 * the served one is made and stored.
 */
async function signedVariant(c: { prepare: typeof prepareCrl; authority: CrlAuthority; previous: bigint; entries: number; now: Date }, fields: TbsInput, lint: CrlLintOptions) {
  const { der, signMs, lintMs, verifying, offsetsChecked } = await signedUnverified(c, fields, lint);
  const signed = performance.now();
  await verifying;
  return { der, signMs, lintMs, verifyMs: performance.now() - signed, offsetsChecked };
}

/**
 * signedVariant whose signature check (stage 5's hash over the TBS) is still running in the
 * thread pool: `verifying` rejects when it fails. Everything else of stage 5 was checked before
 * this returns. The file variant's write starts meanwhile; its rename and the transaction both
 * wait for `verifying`.
 */
async function signedUnverified(
  c: { prepare: typeof prepareCrl; authority: CrlAuthority; previous: bigint; entries: number; now: Date },
  fields: TbsInput,
  lint: CrlLintOptions,
  space?: (bytes: number) => Buffer,
) {
  const { authority, entries } = c;
  const started = performance.now();
  const tbs = c.prepare(fields, space);
  const built = performance.now();
  const copy = await tbs.signWithAsync(authority.lintSigner);
  const { entries: linted, offsetsChecked } = lintStage(copy, lint, entries);
  const lintedAt = performance.now();
  const der = await tbs.signWithAsync(authority.signer); // overwrites the copy's signature: `copy` is gone
  const signed = performance.now();
  const verifying = verifyStage(der, authority, c.now, c.previous, entries, linted);
  verifying.catch(() => undefined); // awaited by the caller
  return { der, signMs: built - started + (signed - lintedAt), lintMs: lintedAt - built, verifying, offsetsChecked: offsetsChecked === true };
}

/** Stage 3: the lint reads a copy signed by the throwaway key (profile, number, entries sorted and unique). */
function lintStage(copy: Buffer, options: CrlLintOptions, entries: number): { entries: number; offsetsChecked?: boolean } {
  const linted = runLint(() => lintCrl(copy, options));
  if (linted.entries !== entries) throw new Error(`CRL lists ${linted.entries} entries, expected ${entries}`);
  return linted;
}

/**
 * Stage 5: signature with the CA key over the bytes signed (in the thread pool), issuer, nextUpdate
 * in the future, number above the previous one, structure. The entries are not walked a second
 * time: the lint just counted them in these very bytes (the CA key's signature was placed around
 * the TBS the lint read, in the same buffer: prepareCrl writes only the outer header, the
 * algorithm and the signature), and the signature check covers every byte of the TBS, so a single
 * changed byte after the lint fails it.
 */
async function verifyStage(crl: Buffer, authority: CrlAuthority, now: Date, previousNumber: bigint, entries: number, linted: number): Promise<void> {
  const verified = await verifyCrlAsync(crl, { caPublicKey: authority.publicKey, now, previousNumber, issuerNameDer: authority.issuerNameDer, lintedEntryCount: linted });
  if (verified.entryCount !== entries) throw new Error(`CRL has ${verified.entryCount} entries, expected ${entries}`);
}

function satisfied(stored: StoredCrlInfo, unless: PublishCondition, now: Date): boolean {
  if (unless.builtAfter !== undefined && !(stored.builtAt && stored.builtAt.getTime() >= unless.builtAfter.getTime())) return false;
  if (unless.youngerThanMs !== undefined) {
    if (!stored.thisUpdate || now.getTime() - stored.thisUpdate.getTime() >= unless.youngerThanMs) return false;
  }
  // Never keep a CRL whose nextUpdate is within the refresh margin (past it, Mosquitto refuses every client).
  return stored.nextUpdate !== null && stored.nextUpdate.getTime() - now.getTime() > (unless.youngerThanMs ?? 0);
}

// ---------------------------------------------------------------------------------------------
// The whole run: stages 1-7, then 8 reload and 9 close sessions; or a file sync
// ---------------------------------------------------------------------------------------------

/** Certificates a CRL lists that the broker's previous CRL did not. */
export interface NewlyRevoked {
  /** Lowercase hex, no leading zeros (device_certificates.serial_number). */
  serials: string[];
  /** Their certificates' CNs (the broker usernames whose sessions are closed). */
  commonNames: string[];
}

/** What one run did. */
export interface CrlRun {
  /** A new CRL was built and stored (false: the stored one was good, or only the file was synced). */
  published: boolean;
  crl: PublishedCrl | null;
  stored: StoredCrlInfo | null;
  file: CrlFileSyncResult | null;
  /** From the run's start until the file was on disk (null: not written). */
  toFileMs: number | null;
  /** Against the CRL the broker had before; null when not worked out (no session step, or no earlier CRL known). */
  newlyRevoked: NewlyRevoked | null;
}

/** Thrown when the CRL is stored but the broker's file could not be written: retry the file, not the publication. */
export class CrlFileError extends Error {
  readonly fileOnly = true;
  constructor(cause: Error) {
    super(cause.message, { cause });
    this.name = 'CrlFileError';
    Object.assign(this, { code: (cause as { code?: unknown }).code });
  }
}

export interface CrlPipelineDeps {
  publish: PublishCrl;
  storage: Storage;
  authority: Pick<CrlAuthority, 'issuerKeyId'>;
  /** Stage 7/8 (null: this process keeps no file). Must be the `file` given to createPublishCrl. */
  file: CrlFileSync | null;
  /** Stage 9 (null: BROKER_ADMIN_URL not set). */
  sessions: RevokedSessions | null;
  logger: Logger;
  /** Counts a failure of the session step's own work (reading the baseline, looking up CNs). */
  sessionErrors?: Counter<'stage'>;
}

export interface CrlPipeline {
  readonly issuerKeyId: string;
  /** Before the first run: removes temp files a killed process left, reads what the broker has loaded (the session step's baseline). */
  start(): Promise<void>;
  /** Stages 1-9. */
  publish(request?: PublishCrlRequest): Promise<CrlRun>;
  /** Stages 7-9 for the stored CRL (another replica published it; a reload to retry). */
  sync(): Promise<CrlRun>;
  readStored(): Promise<StoredCrlInfo | null>;
  /** Resolves when the session step's work is done (tests, shutdown). */
  idle(): Promise<void>;
}

/**
 * The stored CRL as the broker's file has it (no IDP, and no entry extensions when it was stored
 * so); a CRL stored before file signatures existed is used as it is.
 */
export async function loadStoredFileCrl(storage: Storage, issuerKeyId: string): Promise<Buffer | null> {
  const stored = await storage.asOperator(({ crl }) => crl.readCrlForFile(issuerKeyId));
  return stored && (stored.fileSignature ? completeCrlOf(stored.der, stored.fileSignature, { withoutEntryExtensions: stored.fileWithoutEntryExtensions }) : stored.der);
}

export function createCrlPipeline(deps: CrlPipelineDeps): CrlPipeline {
  const { storage, file, sessions, logger } = deps;
  const issuerKeyId = deps.authority.issuerKeyId;
  /**
   * The CRL the broker has (or will have at its next reload): what "newly" revoked is relative to.
   * Only its serials count: the file variant, or the served one of the same publication (same entries).
   */
  let baseline: Uint8Array | null = null;
  /** Revoked CNs written to the file whose reload failed: closed after the next successful reload. */
  const unkicked = new Set<string>();
  let work: Promise<unknown> = Promise.resolve();

  const readStored = () => storage.asOperator(({ crl }) => crl.readCrlInfo(issuerKeyId));
  const loadStoredFileDer = () => loadStoredFileCrl(storage, issuerKeyId);

  const sessionFailure = (stage: string, error: unknown, message: string) => {
    deps.sessionErrors?.inc({ stage });
    logger.error({ event: 'broker_kick_failed', stage, err: (error as Error)?.message ?? String(error) }, message);
  };

  /** Which serials `next` adds to the baseline, and their CNs; the baseline moves to `next`. */
  async function newlyRevokedBy(next: Uint8Array): Promise<NewlyRevoked | null> {
    if (!sessions) return null;
    const previous = baseline;
    baseline = next;
    // No baseline (no file at start): closing every revoked CN's sessions would disconnect every rotated device.
    if (!previous) return null;
    const serials = newlyRevokedSerials(previous, next);
    try {
      const commonNames = serials.length ? await storage.asOperator(({ crl }) => crl.commonNamesOfSerials(serials)) : [];
      return { serials, commonNames };
    } catch (error) {
      sessionFailure('lookup', error, 'could not look up the CNs of newly revoked certificates; their sessions stay open until they reconnect');
      return { serials, commonNames: [] };
    }
  }

  /** Stage 9, after stage 8: only once the broker reloaded a CRL listing them (otherwise the device just reconnects). */
  function closeSessions(fileResult: CrlFileSyncResult | null, newly: NewlyRevoked | null) {
    if (!sessions || !fileResult) return;
    for (const cn of newly?.commonNames ?? []) unkicked.add(cn);
    if (fileResult.reloaded !== true) {
      // false: the reload failed, they are closed after the next one that succeeds; without a reloader, never.
      if (fileResult.reloaded === null && !file?.reloadConfigured) unkicked.clear();
      return;
    }
    const names = [...unkicked];
    unkicked.clear();
    // Kicks run after the run returns: they never hold up the next publication.
    work = work.then(() => sessions.kick(names)).catch((error: unknown) => sessionFailure('kick', error, 'could not close broker sessions'));
  }

  /** Stages 7-9 for the stored CRL (its file variant is loaded only when the file is older). */
  async function syncStored(stored: StoredCrlInfo | null, started: number): Promise<CrlRun> {
    if (!file || !stored || stored.sha256 === null) return { published: false, crl: null, stored, file: null, toFileMs: null, newlyRevoked: null };
    let loaded: Uint8Array | null = null;
    let fileResult: CrlFileSyncResult;
    try {
      fileResult = await file.sync({ crlNumber: stored.crlNumber, load: async () => (loaded = await loadStoredFileDer()) });
    } catch (error) {
      throw new CrlFileError(error as Error);
    }
    const newly = fileResult.file === 'written' && loaded ? await newlyRevokedBy(loaded) : null;
    closeSessions(fileResult, newly);
    return { published: false, crl: null, stored, file: fileResult, toFileMs: fileResult.file === 'written' ? performance.now() - started : null, newlyRevoked: newly };
  }

  return {
    issuerKeyId,
    async start() {
      // A kill between writing a temp file and renaming it leaves the temp file behind.
      await file?.removeStaleTempFiles().catch((error: Error) => logger.warn({ err: error.message }, 'could not remove temp CRL files'));
      if (!sessions || !file) return;
      try {
        baseline = await file.currentDer();
      } catch (error) {
        // Not silence: the error is logged and counted, and the stored CRL stands in for the file.
        sessionFailure('baseline', error, 'cannot read the CRL file the broker has loaded; newly revoked certificates are worked out against the stored CRL');
        baseline = await loadStoredFileDer().catch(() => null);
      }
    },
    async publish(request = {}) {
      const started = performance.now();
      const result = await deps.publish(request);
      if (!result.published) return syncStored(result.stored, started); // the stored CRL was good: the file follows it
      const outcome = result.file;
      if (outcome && 'error' in outcome) throw new CrlFileError(outcome.error);
      const fileResult = outcome?.result ?? null;
      // The served variant lists the very serials of the file's (and is not made on demand as fileDer is).
      const newly = fileResult?.file === 'written' ? await newlyRevokedBy(result.crl.der) : null;
      closeSessions(fileResult, newly);
      return {
        published: true,
        crl: result.crl,
        stored: result.stored,
        file: fileResult,
        toFileMs: fileResult?.file === 'written' && outcome ? outcome.atMs : null,
        newlyRevoked: newly,
      };
    },
    sync: async () => syncStored(await readStored(), performance.now()),
    readStored,
    async idle() {
      for (let seen: Promise<unknown> | null = null; seen !== work; ) {
        seen = work;
        await seen;
      }
      await sessions?.idle();
    },
  };
}
