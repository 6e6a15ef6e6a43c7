import type { CaRecord, CaStatus } from '../domain/ca.ts';
import type { BrokerGrant } from '../domain/broker-acl.ts';
import type { AlertRecord, AlertStatus } from '../domain/alert.ts';
import type { AuditEventRecord } from '../domain/audit.ts';
import type { CertificateRecord, CertificateStatus, CertificateWithPem, RotationFilter } from '../domain/certificate.ts';
import type { DeviceCertificateStatus, DeviceRecord, DeviceSort, DeviceSummary } from '../domain/device.ts';
import type { DeliveryRecord, WebhookRecord } from '../domain/webhook.ts';
import type { RenewalPolicy } from '../domain/renewal-policy.ts';

/** An ACTIVE certificate whose renewal window (before jitter) has begun and that has no schedule yet. */
export interface AdviceCandidate {
  id: number;
  tenant_id: string;
  device_id: string;
  common_name: string;
  serial_number: string;
  fingerprint_sha256: string;
  not_before: string;
  not_after: string;
}

/** A schedule whose advice is due and not yet published. */
export interface DueAdvice {
  certificate_id: number;
  tenant_id: string;
  common_name: string;
  serial_number: string;
  not_after: string;
  due_at: string;
  overdue_at: string;
}

/** How a tenant's unit of work runs. */
export interface TenantWorkOptions {
  /**
   * Its prepared statements run their generic plan, never a plan made for the call's values
   * (Postgres's plan_cache_mode = force_generic_plan, for this transaction only; PGlite the same).
   * For a transaction of hot constant statements whose generic plan is the one wanted, which
   * Postgres's own choice (plan_cache_mode = auto) would not pick: the issuance group's key check,
   * planned again at every call otherwise (its generic plan's cost, for an array of unknown length,
   * is above the custom plans' for the usual few rows): 160 µs of backend CPU for a check of 8
   * keys against 380-560 µs with the planning, measured on this machine (issue 22).
   */
  genericPlans?: boolean;
}

/**
 * The storage ports of the use cases (smallstep's db.AuthDB, Boulder's storage authority):
 * domain types in and out, no SQL. Implemented over Postgres/PGlite by repositories.ts in the
 * storage layer, which binds its repository functions to one transaction.
 *
 * A unit of work is one transaction: `asTenant` runs under the tenant's row-level security,
 * `asOperator` system-wide (CRL, worker, operator API). Everything `fn` does through `repos`
 * commits together, or not at all when it throws.
 */
export interface Storage {
  asTenant<T>(tenantId: string, fn: (repos: TenantRepositories) => Promise<T>, options?: TenantWorkOptions): Promise<T>;
  asOperator<T>(fn: (repos: OperatorRepositories) => Promise<T>): Promise<T>;
}

/** An insert hit an existing key (device id, certificate fingerprint). The transaction is lost. */
export class AlreadyExistsError extends Error {}

/** An insert referenced a row that does not exist (a certificate for an unknown device). The transaction is lost. */
export class ReferenceNotFoundError extends Error {}

export interface TenantRepositories {
  devices: DeviceRepository;
  certificates: CertificateRepository;
  rotations: RotationRepository;
  audit: AuditLog;
  alerts: AlertRepository;
  webhooks: WebhookRepository;
  outbox: OutboxRepository;
  brokerGrants: BrokerGrantRepository;
  keys: DeviceKeyRepository;
  renewalPolicy: RenewalPolicyRepository;
}

/** The tenant's renewal policy (a tenant without one has DEFAULT_RENEWAL_POLICY). */
export interface RenewalPolicyRepository {
  getRenewalPolicy(tenantId: string): Promise<RenewalPolicy>;
  setRenewalPolicy(tenantId: string, policy: RenewalPolicy, at: Date): Promise<void>;
}

/** A tenant's broker grants (tenant/<tenant>/<filter> for every device of the tenant). */
export interface BrokerGrantRepository {
  listBrokerGrants(tenantId: string): Promise<BrokerGrant[]>;
  /** Replaces the whole list. */
  replaceBrokerGrants(g: { tenantId: string; grants: BrokerGrant[]; actor: string; now: Date }): Promise<void>;
}

/** Device keys by the SHA-256 (hex) of their SubjectPublicKeyInfo DER. */
export interface DeviceKeyRepository {
  /** Revoked for keyCompromise in any tenant. */
  isCompromised(spkiSha256: string): Promise<boolean>;
  /** The revoked certificate's key is refused from now on, in every tenant. */
  markKeyCompromised(certificateId: number, at: Date): Promise<void>;
  /** The tenant's devices other than `deviceId` with a certificate for the key (a few, sorted). */
  otherDevicesWithKey(tenantId: string, deviceId: string, spkiSha256: string): Promise<string[]>;
  /** The tenant setting that lets one key serve several devices (default: no). */
  allowsSharedDeviceKeys(tenantId: string): Promise<boolean>;
  /** The three above in one round trip. */
  keyStatus(tenantId: string, deviceId: string, spkiSha256: string): Promise<{ compromised: boolean; otherDevices: string[]; allowsShared: boolean }>;
  /** keyStatus for several (device, key) pairs of one tenant in one round trip, in their order. */
  keyStatuses(tenantId: string, items: Array<{ deviceId: string; spkiSha256: string }>): Promise<Array<{ compromised: boolean; otherDevices: string[]; allowsShared: boolean }>>;
  setAllowSharedDeviceKeys(tenantId: string, allow: boolean, at: Date): Promise<void>;
}

/** The operator role sees every tenant and may also run the system-wide tasks. */
export interface OperatorRepositories extends TenantRepositories {
  rotations: OperatorRotationRepository;
  alerts: OperatorAlertRepository;
  webhooks: OperatorWebhookRepository;
  outbox: OperatorOutboxRepository;
  crl: CrlRepository;
  tasks: TaskRepository;
  brokerNodes: BrokerNodeRepository;
  renewalAdvice: RenewalAdviceRepository;
  cas: CaRepository;
}

// ---- certificate authorities (system table, operator only)

export interface NewCaRecord extends Omit<CaRecord, 'activatedAt' | 'retiringAt' | 'retiredAt' | 'revokedAt' | 'revocationReason' | 'kind' | 'parentId' | 'serialNumber'> {
  createdBy: string;
  /** Default `issuing`. */
  kind?: CaRecord['kind'];
  /** The root that signed it (default null: self-signed). */
  parentId?: string | null;
}

export interface CaProgress {
  tenantId: string;
  activeCertificates: number;
}

/** The Device CA records (certificate_authorities). Unique violations (a second active CA in a scope, a known key) throw AlreadyExistsError. */
export interface CaRepository {
  listCas(): Promise<CaRecord[]>;
  findCa(id: string, options?: { lock?: boolean }): Promise<CaRecord | null>;
  findCaByKeyId(issuerKeyId: string): Promise<CaRecord | null>;
  insertCa(ca: NewCaRecord): Promise<CaRecord>;
  /** The intermediates a root signed (any status), oldest first. */
  childCas(parentId: string): Promise<CaRecord[]>;
  /** The active CA of a scope (null = global), locked for the transaction. */
  lockActiveCa(tenantId: string | null): Promise<CaRecord | null>;
  /** Moves the CA to `to` if its status is one of `from` (stamping the status's timestamp; `reason` for revoked/retired); null otherwise. */
  setCaStatus(id: string, to: CaStatus, from: readonly CaStatus[], at: Date, reason?: string | null): Promise<CaRecord | null>;
  /** The configured (DEVICE_CA_*) CA's distribution point follows PUBLIC_BASE_URL, as before CA records: updated at start. */
  setCaCrlUrl(id: string, url: string): Promise<void>;
  /** Unrevoked, unexpired certificates the CA signed, per tenant. */
  caProgress(caId: string, now: Date): Promise<CaProgress[]>;
  /** Records the CA on up to `limit` certificates with its issuer label and no CA yet (the upgrade's backfill); returns how many. */
  backfillCaId(caId: string, issuerLabel: string, limit: number): Promise<number>;
}

/** Renewal schedules (renewal_advice): when each certificate's advice is due and when it is overdue. */
export interface RenewalAdviceRepository {
  certificatesEnteringWindow(now: Date, defaultWindow: number, limit: number): Promise<AdviceCandidate[]>;
  scheduleAdvice(rows: Array<{ certificateId: number; tenantId: string; deviceId: string; dueAt: Date; overdueAt: Date }>): Promise<void>;
  dueAdvice(now: Date, limit: number): Promise<DueAdvice[]>;
  markAdvicePublished(certificateIds: number[], at: Date): Promise<void>;
  removeStaleAdvice(limit: number): Promise<Array<{ tenant_id: string; common_name: string }>>;
}

// ---- devices

export interface DeviceListQuery {
  tenantId?: string;
  limit: number;
  after?: string;
  /** device ids starting with this */
  idPrefix?: string;
  siteId?: string;
  certificateStatus?: DeviceCertificateStatus;
  /** an ACTIVE certificate expiring before this */
  expiringBefore?: Date;
  rotation?: 'pending' | 'none';
  /** device_id (default) or expiry: the soonest ACTIVE certificate first (devices without one are not listed) */
  sort?: DeviceSort;
  /** devices with an ACTIVE certificate signed by this CA record (device_certificates.ca_id) */
  caId?: string;
}

export interface DevicePage {
  devices: DeviceSummary[];
  total: number;
  /** total is DEVICE_TOTAL_CAP and more match (filtered lists only) */
  totalCapped: boolean;
  /** Cursor of the next page (`tenant/device`), null on the last one. */
  next: string | null;
}

export interface DeviceRepository {
  /** Throws AlreadyExistsError when the device is registered already. */
  insertDevice(d: { tenantId: string; deviceId: string; siteId: string | null; now: Date }): Promise<DeviceRecord>;
  /** Row-locks the device: rotations and issuance for one device are serialised on it. */
  lockDevice(tenantId: string, deviceId: string): Promise<DeviceRecord | null>;
  findDevice(tenantId: string, deviceId: string): Promise<DeviceRecord | null>;
  /** Keyset pages on (tenant_id, device_id). */
  listDevices(q: DeviceListQuery): Promise<DevicePage>;
}

// ---- certificates

export interface NewCertificate {
  tenantId: string;
  deviceId: string;
  certPem: string;
  fingerprint: string;
  commonName: string;
  issuer: string;
  /** The CA record that signed it (certificate_authorities.id); null: not known (an upload verified against no record). */
  caId?: string | null;
  serialNumber: string;
  keyType: string;
  /** SHA-256 (hex) of the certified key's SubjectPublicKeyInfo DER. */
  spkiSha256: string;
  notBefore: Date;
  notAfter: Date;
  now: Date;
}

export interface CertificateListQuery {
  tenantId?: string;
  deviceId?: string;
  status?: CertificateStatus;
  /** ACTIVE certificates whose not_after falls before this instant. */
  expiringBefore?: Date;
  rotation?: RotationFilter;
  /** Signed by this CA record (device_certificates.ca_id). */
  caId?: string;
  limit: number;
  /** Keyset cursor: the last id of the previous page (newest first). */
  beforeId?: number;
}

export interface CertificatePage {
  certificates: CertificateRecord[];
  total: number;
  /** Id cursor of the next page, null on the last one. */
  next: number | null;
}

export interface CertificateRepository {
  /** A CRL reconciled after a restore listed this serial of the CA while the database did not know it: the certificate is revoked. */
  revokedOnEarlierCrl(issuer: string, serialHex: string): Promise<boolean>;
  /**
   * Inserts the certificate and its audit event (whose target is the new certificate's id).
   * Throws AlreadyExistsError for a known certificate, ReferenceNotFoundError for an unknown device.
   */
  insertCertificate(c: NewCertificate, audit: Omit<AuditEvent, 'targetId' | 'tenantId' | 'at'>): Promise<CertificateRecord>;
  /**
   * Group commit of issued certificates (one tenant, one statement): each member is inserted with
   * its audit event when its key is neither compromised nor certified for another device of the
   * tenant; the others are skipped (null at their index) for the caller to store one by one, where
   * the precise error is raised. All-or-nothing for the inserted ones: any error rolls back the whole
   * statement (the caller then stores each member on its own).
   */
  insertIssuedCertificates(members: { certificate: NewCertificate; audit: Omit<AuditEvent, 'targetId' | 'tenantId' | 'at'> }[]): Promise<(CertificateRecord | null)[]>;
  findCertificate(id: number): Promise<CertificateWithPem | null>;
  /** `lock`: the certificates are locked too, so a concurrent revocation waits (or is seen) before a rotation schedules them. */
  activeCertificatesOfDevice(tenantId: string, deviceId: string, options?: { lock?: boolean }): Promise<CertificateRecord[]>;
  /** Locks one certificate and returns its status; null when it does not exist (or is another tenant's). */
  lockCertificate(id: number): Promise<CertificateStatus | null>;
  listCertificates(q: CertificateListQuery): Promise<CertificatePage>;
  /** ACTIVE → REVOKED; null when the certificate is not (or no longer) ACTIVE. */
  markRevoked(id: number, reason: string, at: Date): Promise<CertificateRecord | null>;
  /**
   * ACTIVE certificates with not_after within each window (days) from now, cumulative (overdue
   * ones count in every window); `tenantId` narrows an operator's count to one tenant.
   */
  countExpiringWithin(now: Date, windowsDays: number[], tenantId?: string): Promise<Record<number, number>>;
  /** The operator's fleet overview (every tenant the transaction may see). */
  fleetOverview(now: Date, weeks: number, revocations: number): Promise<FleetOverviewRows>;
  /** The tenant's unexpired ACTIVE certificates signed by each of these CA records (device_certificates.ca_id), by CA id. */
  activeCertificatesByCa(tenantId: string, caIds: string[], now: Date): Promise<Record<string, number>>;
}

export interface FleetOverviewRows {
  /** Per tenant, from the exact counters: devices and certificates by status. */
  tenants: { tenant_id: string; devices: number; certificates: Record<CertificateStatus, number> }[];
  /** ACTIVE certificates expiring in week i from now (i = 0 .. weeks - 1). */
  expiringPerWeek: number[];
  /** ACTIVE certificates already past not_after (the worker marks them EXPIRED). */
  overdue: number;
  recentRevocations: { id: number; tenant_id: string; device_id: string; revoked_at: string; revoked_reason: string | null }[];
}

// ---- rotations

/** One pending scheduled revocation: `old_certificate_id` is revoked at `scheduled_revoke_at`, superseded by `new_certificate_id`. */
export interface PendingRotation {
  id: number;
  tenant_id: string;
  device_id: string;
  new_certificate_id: number;
  old_certificate_id: number;
  old_fingerprint: string;
  old_status: string;
  /** Status of the new certificate: the old one is only ever revoked while this is ACTIVE. */
  new_status: string;
  scheduled_revoke_at: string;
  created_at: string;
  /** Who started the rotation (actor id); null for older rotations. */
  started_by: string | null;
  /** false: when the rotation ends the old certificate is left to expire, not revoked (renewal policy revoke_superseded). Missing: true. */
  revoke_old?: boolean;
}

export interface RotationRepository {
  /** The caller has checked, under the device lock, that the device has no pending rotation. */
  scheduleRevocation(s: {
    tenantId: string;
    deviceId: string;
    newCertificateId: number;
    oldCertificateId: number;
    revokeAt: Date;
    now: Date;
    startedBy: string;
    /** false: the old certificate is left to expire when the rotation ends (default true: revoked, superseded). */
    revokeOld?: boolean;
  }): Promise<{ scheduled_revoke_at: string }>;
  /** The device's pending rows, soonest first. */
  pendingRotationsOfDevice(tenantId: string, deviceId: string): Promise<PendingRotation[]>;
  /** PENDING → COMPLETED for one row. */
  completeRotation(id: number, at: Date): Promise<void>;
  /** PENDING → COMPLETED for the row scheduling `oldCertificateId` (it was revoked). */
  completeRotationsOfOld(oldCertificateId: number, at: Date): Promise<void>;
  /** PENDING, COMPLETED or CANCELLED for the device's most recent rotation; null when it never had one. */
  latestRotationStatus(tenantId: string, deviceId: string): Promise<string | null>;
  /** PENDING → CANCELLED for the rows a given new certificate created; returns their old certificate ids, ascending. */
  cancelRotationsOf(tenantId: string, deviceId: string, newCertificateId: number, at: Date): Promise<number[]>;
}

export interface OperatorRotationRepository extends RotationRepository {
  /**
   * Claims due rows system-wide, locking the row and both certificates; rows someone else
   * holds are skipped, so two workers never revoke the same certificate and never wait.
   */
  claimDueRotations(now: Date, limit: number): Promise<PendingRotation[]>;
}

// ---- audit

export interface AuditEvent {
  tenantId: string;
  actor: string;
  action: string;
  targetType: string;
  targetId: string | number;
  details?: Record<string, unknown>;
  at: Date;
}

export interface AuditListQuery {
  tenantId?: string;
  action?: string;
  targetType?: string;
  targetId?: string;
  actor?: string;
  limit: number;
  /** Keyset cursor: the last id of the previous page (newest first). */
  beforeId?: number;
}

export interface AuditPage {
  events: AuditEventRecord[];
  /** Id cursor of the next page, null on the last one (no total: the log only grows). */
  next: number | null;
}

export interface AuditLog {
  /** Written in the same transaction as the change it records. */
  recordAudit(e: AuditEvent): Promise<void>;
  /** Newest first, keyset pages. */
  listAuditEvents(q: AuditListQuery): Promise<AuditPage>;
}

// ---- alerts

export interface AlertListQuery {
  tenantId?: string;
  type?: string;
  status?: AlertStatus;
  /** OPEN or ACKNOWLEDGED: not CLOSED. */
  unresolved?: boolean;
  deviceId?: string;
  severity?: number;
  minSeverity?: number;
  limit: number;
  /** Keyset cursor: the last id of the previous page (newest first). */
  beforeId?: number;
}

export interface AlertPage {
  alerts: AlertRecord[];
  total: number;
  /** Id cursor of the next page, null on the last one. */
  next: number | null;
}

export interface AlertRepository {
  listAlerts(q: AlertListQuery): Promise<AlertPage>;
  findAlert(id: number): Promise<AlertRecord | null>;
  /** OPEN → ACKNOWLEDGED; null when not found or not OPEN. */
  acknowledgeAlert(id: number, actor: string, at: Date): Promise<AlertRecord | null>;
  /** Closes by hand (close_reason manual) and queues alert.closed for the tenant's webhooks; null when not open. */
  closeAlertManually(id: number, actor: string, at: Date): Promise<AlertRecord | null>;
}

export interface ExpiringAlertsInput {
  now: Date;
  warnUntil: Date;
  cutoffs: Date[];
  severities: number[];
  actor: string;
}

export interface OperatorAlertRepository extends AlertRepository {
  /**
   * Opens, escalates and closes the CERT_EXPIRING alerts (and closes CERT_EXPIRED ones whose
   * device has a valid certificate again) in one set-based step, queueing their webhook events.
   */
  reconcileExpiryAlerts(input: ExpiringAlertsInput): Promise<{ opened: number; escalated: number; closed: number; closed_by_reason: Record<string, number> }>;
  /** ACTIVE certificates past not_after become EXPIRED (audited); a device left without a valid one gets a CERT_EXPIRED alert. */
  expireCertificates(input: { now: Date; actor: string; severity: number }): Promise<{ expired: number; devicesWithoutCertificate: number }>;
  /** Opens the one system alert of a type, or raises its severity; a second run changes nothing. */
  raiseSystemAlert(a: {
    tenantId: string;
    type: string;
    fingerprint: string;
    severity: number;
    summary: string;
    details: Record<string, unknown>;
    now: Date;
  }): Promise<'opened' | 'updated' | 'unchanged'>;
  /** Closes the open system alert of a type; true when one was closed. */
  resolveSystemAlert(a: { tenantId: string; type: string; fingerprint: string; actor: string; now: Date }): Promise<boolean>;
}

// ---- webhooks and their deliveries

export interface WebhookRepository {
  /** `secret(id)`: the stored secret, sealed for the new row's id (its associated data). */
  insertWebhook(w: { tenantId: string; url: string; description: string | null; enabled: boolean; secret: (id: number) => string; createdBy: string; now: Date }): Promise<WebhookRecord>;
  listWebhooks(): Promise<WebhookRecord[]>;
  findWebhook(id: number): Promise<WebhookRecord | null>;
  updateWebhook(id: number, changes: { url?: string; description?: string | null; enabled?: boolean; secret?: string }, now: Date): Promise<WebhookRecord | null>;
  /** Deletes the endpoint and its queued deliveries; false when not found. */
  deleteWebhook(id: number): Promise<boolean>;
  /** The tenant's webhook count, with the tenant's creations serialised until the transaction ends. */
  countWebhooksForCreate(tenantId: string): Promise<number>;
}

export interface OperatorWebhookRepository extends WebhookRepository {
  /** Endpoints whose secret is still stored in plaintext (written before encryption at rest). */
  listPlaintextSecrets(): Promise<{ id: number; tenantId: string; secret: string }[]>;
  /** Up to `limit` endpoints with id above `afterId` whose stored secret does not start with `prefix` (not yet under the current key), by id. */
  listSecretsNotUnder(prefix: string, afterId: number, limit: number): Promise<{ id: number; tenantId: string; secret: string }[]>;
  /** Replaces a stored secret by its encrypted form, unless it changed meanwhile (rotated). */
  replaceStoredSecret(id: number, from: string, to: string): Promise<boolean>;
  /** Up to `limit` provisioning policies with tenant id above `afterTenant` whose sealed approval webhook secret does not start with `prefix`, by tenant id. */
  listApprovalSecretsNotUnder(prefix: string, afterTenant: string, limit: number): Promise<{ tenantId: string; secret: string }[]>;
  /** Replaces a tenant's sealed approval secret, unless it changed meanwhile (rotated). */
  replaceApprovalSecret(tenantId: string, from: string, to: string): Promise<boolean>;
}

export interface ClaimedDelivery {
  id: number;
  tenantId: string;
  webhookId: number;
  event: string;
  /** The alert as it was when the event happened; `occurred_at` in ISO 8601. */
  payload: { alert: AlertRecord; occurred_at: string };
  /** This attempt's number (1 for the first). */
  attempt: number;
  url: string;
  /** As stored: encrypted (`v1:…`) or legacy plaintext. */
  secret: string;
}

export interface DeliveryOutcome {
  id: number;
  /** The attempt this outcome belongs to: a row re-claimed by someone else since is left alone. */
  attempt: number;
  status: 'PENDING' | 'DELIVERED' | 'DEAD';
  deliveredAt: Date | null;
  nextAttemptAt: Date | null;
  statusCode: number | null;
  error: string | null;
}

export interface OutboxRepository {
  /** The latest deliveries of one webhook, newest first. */
  listDeliveries(webhookId: number, limit: number): Promise<DeliveryRecord[]>;
}

export interface OperatorOutboxRepository extends OutboxRepository {
  /**
   * Claims due deliveries of enabled webhooks, at most `perWebhook` per endpoint, hidden from
   * other replicas for `claimMs` (after that, a crash mid-send, they are due again).
   */
  claimDueDeliveries(q: { now: Date; limit: number; perWebhook: number; claimMs: number }): Promise<ClaimedDelivery[]>;
  recordDeliveryOutcomes(outcomes: DeliveryOutcome[]): Promise<void>;
  /** Deletes delivered and dead rows created before `before`, at most `limit`. */
  pruneDeliveries(before: Date, limit: number): Promise<number>;
}

// ---- CRL

/** The stored CRL state of one CA, without the DER. crlNumber 0 with no DER: nothing published yet. */
export interface StoredCrlInfo {
  issuerKeyId: string;
  crlNumber: bigint;
  thisUpdate: Date | null;
  nextUpdate: Date | null;
  sha256: string | null;
  entries: number | null;
  bytes: number | null;
  /** Database time when that build began: every revocation committed before it is in that CRL. */
  builtAt: Date | null;
  publishedAt: Date | null;
  /** The highest CRL number seen anywhere (a reconciled CRL after a restore): the next CRL is numbered above it too. */
  numberFloor?: bigint;
}

/** What restoreRevocations did: certificates re-marked REVOKED, unknown serials kept for every later CRL. */
export interface RestoredRevocations {
  remarked: Array<{ id: number; tenantId: string; deviceId: string; serialHex: string; previousStatus: string; revokedAt: Date; reason: string }>;
  kept: Array<{ serialHex: string; revokedAt: Date; reason: string }>;
}

export interface CrlToStore {
  crlNumber: bigint;
  thisUpdate: Date;
  nextUpdate: Date;
  der: Uint8Array;
  /** Signature of the broker's file variant (the same TBS without Issuing Distribution Point). */
  fileSignature: Uint8Array;
  /** The file variant's entries carry no crlEntryExtensions (reason codes): how to rebuild it from `der`. */
  fileWithoutEntryExtensions: boolean;
  sha256: string;
  entries: number;
  publishedAt: Date;
}

/** Which revoked certificates a CRL lists (RFC 5280 3.3 retention), all explicit. */
export interface RevokedEntriesScope {
  /** device_certificates.issuer of the CA: a CRL lists only its own CA's certificates. */
  issuer: string;
  /**
   * thisUpdate of the previous CRL (null: none yet). A revoked certificate stays listed until it
   * has been on one CRL whose thisUpdate is after its notAfter: listed while notAfter is at or
   * after the previous CRL's thisUpdate, and (not listed yet) when revoked after that CRL.
   */
  previousThisUpdate: Date | null;
}

/** One revoked entry as read: serial (hex), revocation time (ms), reason text, the certificate's notAfter (ms; Infinity: never leaves the CRL). */
export type RevokedEntryCallback = (serialHex: string, revokedAtMs: number, reason: string, notAfterMs: number) => void;

/**
 * One revoked entry as stored already DER-encoded (device_certificates.crl_entry, made by the
 * revoking statement): `der[start, end)` is the whole entry (with its reasonCode extension, if
 * any); revocation time and notAfter in whole seconds (Infinity: never leaves the CRL).
 */
export type EncodedEntryCallback = (der: Uint8Array, start: number, end: number, revokedAtSeconds: number, notAfterSeconds: number) => void;

export interface CrlRepository {
  /** Locks the CA's CRL state until the transaction ends (creating it on first use): CRL numbers are handed out one at a time. */
  lockCrlState(issuerKeyId: string): Promise<StoredCrlInfo>;
  /** Stores a new CRL in the locked state; builtAt is the transaction start. */
  saveCrl(issuerKeyId: string, crl: CrlToStore): Promise<StoredCrlInfo>;
  /** The latest published CRL's metadata; null before the first publication. */
  readCrlInfo(issuerKeyId: string): Promise<StoredCrlInfo | null>;
  /** The latest published CRL with its DER; null before the first publication. */
  readCrl(issuerKeyId: string): Promise<{ info: StoredCrlInfo; der: Buffer } | null>;
  /** The latest CRL and the signature of its file variant (null: stored before there was one); null before the first publication. */
  readCrlForFile(issuerKeyId: string): Promise<{ der: Buffer; fileSignature: Buffer | null; fileWithoutEntryExtensions: boolean } | null>;
  /**
   * Hands the revoked certificates of the scope's CRL to onEntry as they are read, in no
   * particular order, from one snapshot. Returns the number of entries.
   */
  forEachRevokedCertificate(scope: RevokedEntriesScope, onEntry: RevokedEntryCallback): Promise<number>;
  /**
   * forEachRevokedCertificate for a CRL build: the entries stored encoded go to onEncoded, the
   * others (revoked before they were stored so, or not encodable in SQL) to onEntry. One snapshot.
   */
  forEachRevokedEntry(scope: RevokedEntriesScope, onEncoded: EncodedEntryCallback, onEntry: RevokedEntryCallback): Promise<number>;
  /**
   * One batch of the stored-entry backfill: the next `limit` revoked rows above `afterId` without a
   * stored CRL entry get one (rows the SQL encoder declines stay without). lastId null: none left.
   */
  backfillCrlEntries(afterId: number, limit: number): Promise<{ lastId: number | null; scanned: number; filled: number }>;
  /** The same, for these serials only (an incremental build reads the rows whose pending marks it took). */
  forEachRevokedCertificateOf(scope: RevokedEntriesScope, serials: string[], onEntry: RevokedEntryCallback): Promise<number>;
  /**
   * Takes the CA's pending-revocation marks before a build reads the entries (they are all in this
   * CRL): the serials they name, and whether one named none (only a full read will do).
   */
  takePendingRevocations(issuer: string): Promise<{ serials: string[]; unnamed: boolean }>;
  /** Revocations committed after the latest CRL's read (e.g. the process died before it published them). */
  hasPendingRevocations(issuer: string): Promise<boolean>;
  /** The latest nextUpdate of any stored CRL; null before the first publication. */
  latestCrlNextUpdate(): Promise<Date | null>;
  /** The distinct CNs of the certificates with these serials (lowercase hex), all tenants: whose broker sessions to close. */
  commonNamesOfSerials(serials: string[]): Promise<string[]>;
  /** Raises the CA's CRL number floor (never lowers it). Call with the CRL state locked. */
  raiseCrlNumberFloor(issuerKeyId: string, floor: bigint): Promise<void>;
  /** The next start or refresh builds a new CRL of the CA (`issuer`: its certificates' issuer), as after a revocation. */
  requestCrlRebuild(issuer: string): Promise<void>;
  /**
   * Restores revocations a CRL listed that the database lacks (after a restore from an older
   * backup): known certificates not REVOKED become REVOKED with the CRL's date and reason,
   * unknown serials are kept so every later CRL lists them. Idempotent.
   */
  restoreRevocations(issuer: string, entries: ReadonlyArray<{ serialHex: string; revokedAt: Date; reason: string }>, sourceCrlNumber: bigint): Promise<RestoredRevocations>;
  /** The kept revocations of unknown certificates of the CA, for the CRL (not those the database now holds as REVOKED). */
  forEachRestoredRevocation(issuer: string, onEntry: RevokedEntryCallback): Promise<number>;
  /** A root CA's entries (`issuer`: the root's label): its revoked and retired intermediates (none for any other CA). */
  forEachEndedIntermediate(issuer: string, onEntry: RevokedEntryCallback): Promise<number>;
}

// ---- periodic tasks

export interface TaskRepository {
  /** Serialises concurrent runs of one set-based task until the transaction ends (a second run waits, then finds nothing to do). */
  lockTask(key: number): Promise<void>;
  /** Runs of the periodic task `name` that failed in a row (its lease). */
  consecutiveFailuresOf(name: string): Promise<number>;
}

// ---- broker nodes (certfleet broker-agent)

export interface BrokerNodeRecord {
  node: string;
  kind: 'mosquitto' | 'rabbitmq';
  crlNumber: bigint | null;
  appliedAt: Date | null;
  reportedAt: Date;
  checkedAt: Date | null;
  checkResult: 'passed' | 'failed' | null;
  checkDetail: string | null;
  lastError: string | null;
  canaryValidId: number | null;
  canaryRevokedId: number | null;
  /** The CRL number applied per CA (issuer key id); null: the agent reported only the lowest. */
  crlNumbers: Record<string, bigint> | null;
}

export interface BrokerNodeReport {
  node: string;
  kind: 'mosquitto' | 'rabbitmq';
  crlNumber: bigint | null;
  appliedAt: Date | null;
  checkedAt: Date | null;
  checkResult: 'passed' | 'failed' | null;
  checkDetail: string | null;
  lastError: string | null;
  /** Per CA (issuer key id), when the agent says (several CAs). */
  crlNumbers?: Record<string, bigint> | null;
  now: Date;
}

export interface BrokerNodeRepository {
  /** Creates or updates the node's row; the CRL number applied never goes backwards. */
  recordReport(r: BrokerNodeReport): Promise<BrokerNodeRecord>;
  findNode(node: string): Promise<BrokerNodeRecord | null>;
  listNodes(): Promise<BrokerNodeRecord[]>;
  /** Remembers the node's canary certificates (creating its row if needed). */
  setCanaries(node: string, kind: 'mosquitto' | 'rabbitmq', ids: { valid: number; revoked: number }, now: Date): Promise<void>;
  /** The CNs of the REVOKED certificates among these serials (hex, no leading zeros): whose broker sessions to close. */
  revokedCommonNames(serials: string[]): Promise<Array<{ serial_number: string; common_name: string }>>;
}
