/**
 * Disaster recovery, the CRL side: before a publisher's first publication it finds the newest CRL
 * of its CA it can (the broker's file, CRL_OUTPUT_PATH; the stored CRL; and, when the operator
 * names one, CRL_RECONCILE_PATH), verifies each against the CA (signature, issuer: nothing is
 * trusted blindly), and hands the entries to the reconcile use case (app/reconcile-revocations.ts),
 * which re-marks what the database lacks and raises the CRL number floor. So after a restore from
 * an older backup no published CRL lacks a revocation an earlier one carried, and no CRL number
 * goes back.
 *
 * The operator's file must verify: anything else (missing, not a CRL, truncated, another CA's) is
 * a CrlReconcileError and the process does not start (nothing is published). The broker's file and
 * the stored CRL are what certfleet wrote itself: one that does not verify (a CA was replaced) is
 * refused with an error in the log and not used; the other sources still count.
 *
 * Reasons: the stored CRL read here is the served variant (each entry with its reason code). The
 * broker's file lists entries without reason codes (publish-crl.ts): a revocation restored from it
 * alone is re-marked with reason unspecified (the certificate is revoked all the same).
 */
import { readFile } from 'node:fs/promises';
import type { Storage } from '../app/storage-ports.ts';
import type { ReconcileResult, ReconcileRevocations, ReconcileSource, ReconcileSourceKind } from '../app/reconcile-revocations.ts';
import type { Logger } from '../support/logger.ts';
import { newlyRevokedSerials } from './build-crl.ts';
import { crlEntries } from './crl-entries.ts';
import type { CrlFileSync } from './crl-file-sync.ts';
import type { CrlAuthority } from './publish-crl.ts';
import { crlPemToDer, verifyCrl, type VerifiedCrl } from './verify-crl.ts';

/** CRL_RECONCILE_PATH names a file that is not a CRL of this CA: the process refuses to start. */
export class CrlReconcileError extends Error {
  readonly code = 'CRL_RECONCILE_REFUSED';
  constructor(
    readonly path: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`CRL_RECONCILE_PATH ${path} refused: ${reason}. Nothing was published; fix or unset CRL_RECONCILE_PATH and start again`, options);
    this.name = 'CrlReconcileError';
  }
}

export interface CrlReconcileDeps {
  authority: Pick<CrlAuthority, 'issuerKeyId' | 'issuerLabel' | 'publicKey' | 'issuerNameDer'>;
  storage: Storage;
  reconcile: ReconcileRevocations;
  /** The broker's file (null: this process keeps none). */
  file: CrlFileSync | null;
  filePath: string | null;
  /** CRL_RECONCILE_PATH (null: none). */
  operatorPath: string | null;
  logger: Logger;
  readFile?: (path: string) => Promise<Buffer>;
}

interface Candidate {
  kind: ReconcileSourceKind;
  path: string | null;
  der: Uint8Array;
  verified: VerifiedCrl;
}

/** A PEM (`X509 CRL`) or DER CRL file's DER. */
function derOf(bytes: Buffer): Buffer {
  const text = bytes.subarray(0, 64).toString('latin1');
  return text.includes('-----BEGIN') ? crlPemToDer(bytes.toString('latin1')) : bytes;
}

/** Verifies a CRL against the CA (time is not checked: an expired CRL still lists its revocations) and reads every entry once. */
function check(der: Uint8Array, authority: CrlReconcileDeps['authority']): VerifiedCrl {
  const verified = verifyCrl(der, { caPublicKey: authority.publicKey, issuerNameDer: authority.issuerNameDer, now: new Date(0) });
  let count = 0;
  for (const _ of crlEntries(der)) count++;
  if (count !== verified.entryCount) throw new Error(`CRL lists ${verified.entryCount} entries, ${count} were readable`);
  return verified;
}

/**
 * The source with only the entries the stored CRL lacks: the database built the stored CRL from
 * its own rows, and a row never leaves REVOKED, so what the stored CRL lists is revoked there
 * already (one in-memory merge instead of a million lookups at every start). The stored CRL itself
 * so contributes its number only. No stored CRL (restored from before the first one): every entry.
 */
function sourceOf(c: Candidate, stored: Uint8Array | null): ReconcileSource {
  const source = { kind: c.kind, path: c.path, crlNumber: c.verified.crlNumber, thisUpdate: c.verified.thisUpdate };
  if (c.kind === 'stored') return { ...source, entries: [] };
  if (!stored) return { ...source, entries: crlEntries(c.der) };
  const lacking = new Set(newlyRevokedSerials(stored, c.der));
  return { ...source, entries: lacking.size === 0 ? [] : filter(crlEntries(c.der), (e) => lacking.has(e.serialHex)) };
}

function* filter<T>(items: Iterable<T>, keep: (item: T) => boolean): Generator<T> {
  for (const item of items) if (keep(item)) yield item;
}

/**
 * Reconciles with the operator's CRL (if named) and the newest of the broker's file and the
 * stored CRL. Throws CrlReconcileError for a bad operator file; returns what was restored.
 */
export async function reconcileWithNewestCrl(deps: CrlReconcileDeps): Promise<ReconcileResult> {
  const { authority, logger } = deps;
  const read = deps.readFile ?? ((path: string) => readFile(path));
  const candidates: Candidate[] = [];

  let operator: Candidate | null = null;
  if (deps.operatorPath) {
    const path = deps.operatorPath;
    let bytes: Buffer;
    try {
      bytes = await read(path);
    } catch (error) {
      throw new CrlReconcileError(path, `cannot read it (${(error as Error).message})`, { cause: error });
    }
    try {
      const der = derOf(bytes);
      operator = { kind: 'operator_file', path, der, verified: check(der, authority) };
    } catch (error) {
      throw new CrlReconcileError(path, `not a valid CRL of this CA (${(error as Error).message})`, { cause: error });
    }
  }

  const refused = (kind: ReconcileSourceKind, path: string | null, error: unknown) =>
    logger.error(
      { event: 'crl_reconcile_refused', source: kind, path, err: (error as Error)?.message ?? String(error) },
      `the ${kind === 'broker_file' ? 'broker CRL file' : 'stored CRL'} does not verify against the CA; it is not used to restore revocations`,
    );
  if (deps.file) {
    try {
      const der = await deps.file.currentDer();
      if (der) candidates.push({ kind: 'broker_file', path: deps.filePath, der, verified: check(der, authority) });
    } catch (error) {
      refused('broker_file', deps.filePath, error);
    }
  }
  let stored: Uint8Array | null = null;
  try {
    // The served variant: the same entries as the file variant, with their reason codes (the file's have none).
    const der = (await deps.storage.asOperator(({ crl }) => crl.readCrl(authority.issuerKeyId)))?.der ?? null;
    if (der) {
      candidates.push({ kind: 'stored', path: null, der, verified: check(der, authority) });
      stored = der;
    }
  } catch (error) {
    refused('stored', null, error);
  }

  // The newest of ours (numbers only increase, a CRL lists every revocation of the ones before it).
  const newest = candidates.reduce<Candidate | null>((a, c) => (a === null || c.verified.crlNumber > a.verified.crlNumber ? c : a), null);
  const chosen = [operator, newest].filter((c): c is Candidate => c !== null);
  if (operator && newest && Buffer.from(operator.der).equals(Buffer.from(newest.der))) chosen.pop();

  const result = await deps.reconcile({ issuerKeyId: authority.issuerKeyId, issuerLabel: authority.issuerLabel }, chosen.map((c) => sourceOf(c, stored)));
  const restored = result.remarked + result.kept;
  const fields = { event: 'crl_reconciled', restored, remarked: result.remarked, kept: result.kept, entries: result.entries, number_floor: result.numberFloor.toString(), sources: result.sources };
  if (restored > 0) logger.warn(fields, `restored ${restored} revocations the database lacked (alert CRL_RECONCILED); the next CRL lists them`);
  else logger.info(fields, 'CRL reconciled: the database holds every revocation of the newest CRL');
  return result;
}
