/**
 * CaDirectory: the set of Device CAs this process knows (issue 19), with the key of every
 * published one loaded. The narrow interface the issuing side (certificate-authority.ts, the
 * use cases through the CertificateAuthority port) and the publication side (CRL per CA,
 * /pki/cas.pem, CRL bundle, broker cafile, EST /cacerts) share.
 *
 * HOW TO CONSUME IT (publication side):
 *  - `published()` is the trust set: every staged, active and retiring CA, each with its loaded
 *    DeviceCa (certificate + KeySigner). Put each of them in the broker cafile / cas.pem / EST
 *    /cacerts, and sign and publish one CRL per entry (crl_state row = `record.issuerKeyId`, its
 *    entries = device_certificates WHERE issuer = `record.issuerLabel`; crl_pending_revocations.issuer
 *    is that same label). A CA's CRL must reach the broker's crlfile before the CA enters its cafile.
 *  - `retired` and `revoked` CAs are NOT in published(): drop them from cafile/cas.pem and stop
 *    publishing their CRL (a revoked CA's certificates must be refused at once: removing it from the
 *    cafile does that; a retired CA has no valid certificate left). Their records stay in all().
 *  - Order (trustOrder): global scope first, then by tenant, oldest first; an intermediate right
 *    after its root. A root (record.kind 'root') is published like any trusted CA (cafile, cas.pem,
 *    its own CRL, which lists its revoked and retired intermediates) but never signs a device
 *    certificate: activeFor()/defaultCa() never return it.
 *  - `defaultCa()` is the global scope's active CA: what /pki/ca.pem and /pki/crl serve. null when
 *    there is none (then those routes answer 503 as today without a CA).
 *  - `activeFor(tenantId)` is the CA that signs for a tenant now (broker plugin binding of tenant to
 *    issuing CA): the tenant's own active CA, else the global one. A tenant's devices may also hold
 *    certificates of a retiring CA of that scope (or the global scope): use each certificate's
 *    issuer (device_certificates.ca_id / issuer) rather than activeFor() to decide which CA signed one.
 *  - `onChange(fn)` fires (after the new set is loaded, keys included) whenever the set or a status
 *    changes: in this process at once, and in other replicas via NOTIFY on `certfleet_ca` (Postgres)
 *    plus a periodic re-read. Rebuild cafile/CRL files from `published()` in the handler. It returns
 *    an unsubscribe function. Handlers must not throw (errors are logged and ignored).
 *  - Each CA's CRL carries `record.crlDistributionPoint` as its Issuing Distribution Point: the
 *    URL in every certificate it signs (/pki/ca/{id}/crl; /pki/crl for the CA imported from DEVICE_CA_*).
 *  - The DeviceCa objects belong to the directory: never close their signers yourself.
 *
 * For tests without storage: `createStaticCaDirectory([...])` with `caRecordFor(deviceCa, {...})`
 * gives a directory of any number of CAs; `setStatus(id, status)` changes one and fires onChange.
 */
import type { CaRecord, CaStatus } from '../domain/ca.ts';
import { isIssuingActive, isPublishedCaStatus } from '../domain/ca.ts';
import type { DeviceCa } from './device-ca.ts';

/** A CA record with its certificate parsed and its key loaded (only published CAs are loaded). */
export interface LoadedCa {
  record: CaRecord;
  ca: DeviceCa;
}

export interface CaDirectory {
  /** Every CA record, any status (no keys): listing, alerts, metrics. */
  all(): readonly CaRecord[];
  /** staged + active + retiring, keys loaded: the set brokers and devices must trust; one CRL each. Global scope first, then by tenant, oldest first. */
  published(): readonly LoadedCa[];
  /** The CA that signs for `tenantId` now: its own active CA, else the global active CA; null when neither exists. null tenant: the global one. */
  activeFor(tenantId: string | null): LoadedCa | null;
  /** The global scope's active CA (/pki/ca.pem, /pki/crl); same as activeFor(null). */
  defaultCa(): LoadedCa | null;
  /** A published CA by id / by subject key id (hex) / by device_certificates.issuer label; null if unknown or not published. */
  byId(id: string): LoadedCa | null;
  byIssuerKeyId(issuerKeyId: string): LoadedCa | null;
  byIssuerLabel(issuerLabel: string): LoadedCa | null;
  /** Subscribe to changes of the set or of a status; returns the unsubscribe function. */
  onChange(listener: () => void): () => void;
  /** Re-reads the records now (after a change this process made, or a NOTIFY); a static directory has nothing to re-read. */
  refresh(): Promise<void>;
}

/** A record for a loaded DeviceCa (tests, and the single-CA start from DEVICE_CA_* before storage knows it). */
export function caRecordFor(ca: DeviceCa, init: Partial<Pick<CaRecord, 'id' | 'tenantId' | 'status' | 'keyRef' | 'createdAt' | 'crlDistributionPoint' | 'kind' | 'parentId'>> = {}): CaRecord {
  const issuerKeyId = ca.subjectKeyId.toString('hex');
  const now = init.createdAt ?? new Date();
  const status = init.status ?? 'active';
  const id = init.id ?? `ca_${issuerKeyId.slice(0, 16)}`;
  return {
    id,
    tenantId: init.tenantId ?? null,
    status,
    kind: init.kind ?? 'issuing',
    parentId: init.parentId ?? null,
    serialNumber: ca.certificate.serialNumber.toLowerCase().replace(/^0+(?=.)/, ''),
    subject: ca.certificate.subject,
    issuerLabel: ca.issuerLabel,
    issuerKeyId,
    notBefore: ca.certificate.notBefore,
    notAfter: ca.certificate.notAfter,
    certPem: ca.certPem,
    keyRef: init.keyRef ?? { kind: 'file', path: ca.signer.label },
    crlDistributionPoint: init.crlDistributionPoint ?? `http://localhost:8080/pki/ca/${id}/crl`,
    createdAt: now,
    activatedAt: status === 'active' || status === 'retiring' ? now : null,
    retiringAt: status === 'retiring' ? now : null,
    retiredAt: status === 'retired' ? now : null,
    revokedAt: status === 'revoked' ? now : null,
    revocationReason: status === 'revoked' ? 'cACompromise' : null,
  };
}

const scopeOrder = (a: CaRecord, b: CaRecord): number =>
  (a.tenantId ?? '').localeCompare(b.tenantId ?? '') || a.notBefore.getTime() - b.notBefore.getTime() || a.id.localeCompare(b.id);

/**
 * The trust order: global scope first, then by tenant, oldest first, except that an intermediate
 * follows its root (every issuer before what it signs: a loader that checks each certificate
 * against the ones before it accepts the file, and the root and its intermediates stay together).
 */
export function trustOrder<T extends { record: CaRecord }>(entries: readonly T[]): T[] {
  const sorted = [...entries].sort((a, b) => scopeOrder(a.record, b.record));
  const ids = new Set(sorted.map((e) => e.record.id));
  const childrenOf = (id: string) => sorted.filter((e) => e.record.parentId === id);
  return sorted.filter((e) => e.record.parentId === null || !ids.has(e.record.parentId)).flatMap((e) => [e, ...childrenOf(e.record.id)]);
}

/**
 * The lookups over a list of entries (shared by the static and the stored directory). `entries`
 * holds every record; `ca` is set for the published ones.
 */
export function directoryView(entries: ReadonlyArray<{ record: CaRecord; ca: DeviceCa | null }>) {
  const sorted = trustOrder(entries);
  const published = sorted.filter((e): e is LoadedCa => e.ca !== null && isPublishedCaStatus(e.record.status));
  // A root is never the CA that signs for a scope (it signs intermediates only).
  const active = (tenantId: string | null) => published.find((e) => isIssuingActive(e.record) && e.record.tenantId === tenantId) ?? null;
  return {
    all: () => sorted.map((e) => e.record),
    published: () => published,
    activeFor: (tenantId: string | null) => (tenantId !== null ? active(tenantId) : null) ?? active(null),
    defaultCa: () => active(null),
    byId: (id: string) => published.find((e) => e.record.id === id) ?? null,
    byIssuerKeyId: (keyId: string) => published.find((e) => e.record.issuerKeyId === keyId.toLowerCase()) ?? null,
    byIssuerLabel: (label: string) => published.find((e) => e.record.issuerLabel === label) ?? null,
  };
}

export type DirectoryView = ReturnType<typeof directoryView>;

/**
 * The CaDirectory methods over the current view (the static and the stored directory delegate to
 * it the same way; only how they get a new view differs).
 */
export function directoryOver(current: () => DirectoryView, changes: ReturnType<typeof changeListeners>, refresh: () => Promise<void>): CaDirectory {
  return {
    all: () => current().all(),
    published: () => current().published(),
    activeFor: (tenantId) => current().activeFor(tenantId),
    defaultCa: () => current().defaultCa(),
    byId: (id) => current().byId(id),
    byIssuerKeyId: (keyId) => current().byIssuerKeyId(keyId),
    byIssuerLabel: (label) => current().byIssuerLabel(label),
    onChange: (listener) => changes.add(listener),
    refresh,
  };
}

/** Listeners of onChange: each called, an exception logged by `onError` and ignored. */
export function changeListeners(onError: (error: unknown) => void = () => undefined) {
  const listeners = new Set<() => void>();
  return {
    add(listener: () => void) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
    fire() {
      for (const listener of [...listeners]) {
        try {
          listener();
        } catch (e) {
          onError(e);
        }
      }
    },
  };
}

export interface StaticCaDirectory extends CaDirectory {
  /** Test seam: changes a CA's status (no transition rules) and fires onChange. */
  setStatus(id: string, status: CaStatus): void;
  /** Test seam: adds a CA and fires onChange. */
  add(entry: LoadedCa): void;
}

/** An in-memory directory of given CAs (tests; a process without storage). */
export function createStaticCaDirectory(initial: readonly LoadedCa[]): StaticCaDirectory {
  let entries: Array<{ record: CaRecord; ca: DeviceCa | null }> = initial.map((e) => ({ record: { ...e.record }, ca: e.ca }));
  let view = directoryView(entries);
  const changes = changeListeners();
  const changed = () => {
    view = directoryView(entries);
    changes.fire();
  };
  return {
    ...directoryOver(() => view, changes, async () => undefined),
    setStatus(id, status) {
      entries = entries.map((e) => (e.record.id === id ? { ...e, record: { ...e.record, status } } : e));
      changed();
    },
    add(entry) {
      entries = [...entries, { record: { ...entry.record }, ca: entry.ca }];
      changed();
    },
  };
}
