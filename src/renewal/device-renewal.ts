import { X509Certificate, createHash, randomBytes, verify } from 'node:crypto';
import type { Actor, CertificateAuthority, KeySource } from '../app/ports.ts';
import type { UseCases } from '../app/use-cases.ts';
import type { PendingRotationView } from '../app/get-rotation.ts';
import { rotationPending } from '../app/rotate-certificate.ts';
import { createRefusalAuditBudget } from '../domain/refusal-audit-budget.ts';
import { DAY_MS, HOUR_MS, type Clock } from '../domain/clock.ts';
import { DEFAULT_VALIDITY_DAYS, MAX_VALIDITY_DAYS, type CertificateRecord } from '../domain/certificate.ts';
import { AppError, isAppError } from '../domain/errors.ts';
import { assertDeviceId } from '../domain/identifiers.ts';
import { renewalSchedule, withinRecoveryWindow } from '../domain/renewal-policy.ts';
import { toPem } from '../pki/pem.ts';
import { publicKeyFromSpki, spkiOf } from '../pki/keys.ts';
import {
  type AuthenticatedDevice,
  checkPresentedCertificate,
  commonNameOf,
  deviceActorId,
  fingerprintOfDer,
  refused,
  splitCommonName,
} from './device-identity.ts';
import type { RenewalStore } from './ports.ts';

export type RenewalTransport = 'est' | 'mqtt';

/** TLS client authentication (id-kp-clientAuth). */
const CLIENT_AUTH_OID = '1.3.6.1.5.5.7.3.2';

/** A device proven by an expired certificate the tenant's recovery window admits. */
export interface RecoveringDevice extends AuthenticatedDevice {
  recovery: true;
}

export interface RenewalResult {
  certificate_id: number;
  cert_pem: string;
  ca_cert_pem: string;
  rotation: { new_certificate_id: number; old_certificate_ids: number[]; scheduled_revoke_at: string | null };
  /** true when this is the answer to a retried request: the same certificate as before. */
  replayed: boolean;
}

export interface DeviceRenewalDeps {
  store: RenewalStore;
  useCases: Pick<UseCases, 'startRotation' | 'confirmRotation' | 'issueCertificate'>;
  authority: Pick<CertificateAuthority, 'caCertPem' | 'issuerPemOf'>;
  keys: Pick<KeySource, 'publicKeyFromCsr'>;
  clock: Clock;
}

const ENROLLMENT_TOKEN_MAX_HOURS = 24 * 30;
/** A signed MQTT renewal request is accepted this long around the server clock. */
export const RENEWAL_SIGNATURE_WINDOW_MS = 5 * 60_000;
const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;
/** A signed request's record is kept this long: past it, signed_at alone refuses the request. */
const SIGNED_REQUEST_MEMORY_MS = 3 * RENEWAL_SIGNATURE_WINDOW_MS;
/** "Come back later" answers decide nothing about the request: not audited (a storm would write one per retry). */
const THROTTLING = new Set(['SERVICE_SATURATED', 'RATE_LIMITED']);

export type RenewalRefusalAction = 'certificate.renewal_refused' | 'certificate.recovery_refused';

/** A certificate certfleet knows, presented by a device (valid or not): whose refusals are audited. */
interface PresentedCertificate {
  tenantId: string;
  deviceId: string;
  actorId: string;
  certificate: CertificateRecord;
}

/** The CSR as sent, or how to read it from the request body (a body that is no CSR is then a refusal like any other). */
export type CsrInput = string | (() => string);

/** An MQTT renewal request: the CSR, signed with the key of the device's current certificate. */
export interface SignedRenewalRequest {
  requestId: string;
  csrPem: string;
  /** The device's current certificate (PEM). */
  certPem: string;
  /** Unix seconds when the device signed. */
  signedAt: number;
  /** base64 signature (SHA-256) over renewalSigningText(requestId, signedAt, csrPem). */
  signature: string;
}
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** The validity of the certificate being renewed, so a renewal keeps the fleet's chosen lifetime. */
function validityDaysOf(device: AuthenticatedDevice): number {
  const days = Math.round((Date.parse(device.certificate.not_after) - Date.parse(device.certificate.not_before)) / DAY_MS);
  return Math.min(MAX_VALIDITY_DAYS, Math.max(1, days || DEFAULT_VALIDITY_DAYS));
}

/**
 * Device-initiated renewal, one use case for every transport (EST, MQTT): a device proven by its
 * current certificate sends a CSR for a new key and gets a rotation exactly like
 * `POST .../rotate` with a CSR. Retries are safe: while the rotation the device started is
 * pending, the same CSR key gets the same certificate back. The device confirms the rotation by
 * using its new certificate.
 */
export function createDeviceRenewal(deps: DeviceRenewalDeps) {
  /**
   * What TLS would have checked, had the certificate not expired: issued (name, AKI and
   * signature) by the Device CA, which is itself valid now; not a CA; usable for TLS client
   * authentication; not before its notBefore. Used only for a certificate TLS refused as expired.
   */
  function verifyExpiredChain(cert: X509Certificate, now: Date) {
    const issuerPem = deps.authority.issuerPemOf(cert.toString());
    if (!issuerPem) throw refused('not issued by a Device CA certfleet trusts');
    const ca = new X509Certificate(issuerPem);
    if (Date.parse(ca.validFrom) > now.getTime() || Date.parse(ca.validTo) <= now.getTime()) throw refused('the Device CA is not valid now');
    if (cert.ca) throw refused('a CA certificate is not a device certificate');
    if (cert.keyUsage && !cert.keyUsage.includes(CLIENT_AUTH_OID)) throw refused('the certificate is not for TLS client authentication');
    if (Date.parse(cert.validFrom) > now.getTime()) throw refused('the certificate is not valid yet');
  }

  /** Errors already audited (a refusal is audited once, where it is decided). */
  const auditedErrors = new WeakSet<AppError>();
  /** One device cannot fill the audit log with refused requests (domain/refusal-audit-budget.ts). */
  const refusalAudits = createRefusalAuditBudget(() => deps.clock.now().getTime());

  const identityOf = (c: CertificateRecord) => ({ certificate_id: c.id, fingerprint_sha256: c.fingerprint_sha256, serial_number: c.serial_number, not_after: c.not_after });

  async function auditRefusal(
    e: { tenantId: string; actor: string; action: RenewalRefusalAction; targetId: string | number; details: Record<string, unknown> },
    error: AppError,
  ): Promise<void> {
    if (auditedErrors.has(error) || THROTTLING.has(error.code)) return;
    auditedErrors.add(error);
    const admitted = refusalAudits.admit(`${e.tenantId}\u0000${e.actor}`);
    if (!admitted) return; // past the requester's budget: refused all the same, counted for its next event
    await deps.store.recordAudit({
      tenantId: e.tenantId,
      actor: e.actor,
      action: e.action,
      targetType: 'certificate',
      targetId: e.targetId,
      details: { ...e.details, code: error.code, reason: error.message, ...admitted },
      at: deps.clock.now(),
    });
  }

  /**
   * Runs `work` for a device that presented a certificate certfleet knows: a refusal (AppError) it
   * throws is audited once with that certificate's identity, and rethrown; nothing was issued.
   */
  async function auditingRefusals<T>(who: PresentedCertificate, action: RenewalRefusalAction, details: Record<string, unknown>, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (e) {
      if (isAppError(e)) {
        await auditRefusal({ tenantId: who.tenantId, actor: who.actorId, action, targetId: who.certificate.id, details: { device_id: who.deviceId, ...identityOf(who.certificate), ...details } }, e);
      }
      throw e;
    }
  }

  /**
   * A request on one device's topic (the broker let only that device publish there) carrying
   * another device's certificate: refused, and audited in the publishing device's tenant (never in
   * the tenant of the certificate, whose public copy anyone may hold).
   */
  async function refuseForeignCertificate(topicCommonName: string, cert: X509Certificate, action: RenewalRefusalAction, details: Record<string, unknown>): Promise<never> {
    const error = refused('cert_pem is not a certificate of the device whose topic carried the request');
    const topic = splitCommonName(topicCommonName);
    if (topic) {
      const fingerprint = fingerprintOfDer(cert.raw);
      await auditRefusal(
        {
          tenantId: topic.tenantId,
          actor: deviceActorId(topic.tenantId, topic.deviceId),
          action,
          targetId: fingerprint,
          details: { device_id: topic.deviceId, presented_certificate: { fingerprint_sha256: fingerprint, serial_number: cert.serialNumber, common_name: commonNameOf(cert) }, ...details },
        },
        error,
      );
    }
    throw error;
  }

  /**
   * The checks of a signed MQTT request (renewal or recovery) of a known certificate: a well-formed
   * request_id, signed_at within the window, the certificate key's signature over the request, and
   * never seen before (recorded in the database: across restarts and replicas).
   */
  async function checkSignedRequest(cert: X509Certificate, who: PresentedCertificate, request: SignedRenewalRequest, clockHint: string): Promise<void> {
    if (!REQUEST_ID.test(request.requestId)) throw new AppError('VALIDATION_FAILED', 'request_id must be 1 to 128 letters, digits, . _ -');
    const now = deps.clock.now();
    if (!Number.isSafeInteger(request.signedAt) || Math.abs(now.getTime() - request.signedAt * 1000) > RENEWAL_SIGNATURE_WINDOW_MS) {
      throw refused(`signed_at must be the signing time in Unix seconds, within ${RENEWAL_SIGNATURE_WINDOW_MS / 60_000} minutes of the server clock${clockHint}`);
    }
    let valid = false;
    try {
      const signature = Buffer.from(request.signature, 'base64');
      valid = signature.length > 0 && verify('sha256', Buffer.from(renewalSigningText(request.requestId, request.signedAt, request.csrPem)), cert.publicKey, signature);
    } catch {
      valid = false;
    }
    if (!valid) throw refused('the signature is not one of the certificate’s key over the request');
    const fresh = await deps.store.recordSignedRequest({
      tenantId: who.tenantId,
      certificateFingerprint: who.certificate.fingerprint_sha256,
      requestId: request.requestId,
      signedAt: request.signedAt,
      now,
      forgetBefore: new Date(now.getTime() - SIGNED_REQUEST_MEMORY_MS),
    });
    if (!fresh) throw new AppError('REPLAYED_REQUEST', 'this signed request was already received: sign a new one (new request_id, signed_at)');
  }

  /**
   * The certificate certfleet issued behind an expired client certificate (recovery): issued by a
   * Device CA (checked here, TLS refused it), of a tenant/device certfleet knows. Unknown
   * certificates are refused without a trace (anyone may present one).
   */
  async function identifyExpired(cert: X509Certificate): Promise<PresentedCertificate> {
    verifyExpiredChain(cert, deps.clock.now());
    const names = splitCommonName(commonNameOf(cert) ?? '');
    if (!names) throw refused('the subject is not tenant/device');
    const record = await deps.store.certificateByFingerprint(names.tenantId, fingerprintOfDer(cert.raw));
    if (!record || record.device_id !== names.deviceId) throw refused('unknown certificate');
    return { ...names, certificate: record, actorId: deviceActorId(names.tenantId, names.deviceId) };
  }

  /**
   * Recovery after an offline period: a device whose certificate expired renews with it when its
   * tenant allows it (renewal policy recovery_window_days, off by default), within that many days
   * after notAfter, for a certificate certfleet issued (not imported), never revoked, never
   * superseded by a newer certificate of the device (except the one this device's own earlier
   * recovery got: a retry). Every decision is audited with the expired certificate's identity.
   */
  async function admitExpired(presented: PresentedCertificate, via: RenewalTransport, details: Record<string, unknown> = {}): Promise<RecoveringDevice> {
    return auditingRefusals(presented, 'certificate.recovery_refused', { transport: via, ...details }, async () => {
      const now = deps.clock.now();
      const record = presented.certificate;
      if (Date.parse(record.not_after) > now.getTime()) {
        // Not expired for certfleet: the ordinary path applies (and refuses what it refuses).
        return { ...presented, certificate: checkPresentedCertificate(record, presented.deviceId, now), recovery: true as const };
      }
      if (record.status === 'REVOKED') throw refused('the certificate is revoked');
      const { policy } = await deps.store.renewalPolicy(presented.tenantId);
      if (policy.recovery_window_days <= 0) {
        throw new AppError('RECOVERY_DISABLED', 'the certificate has expired and the tenant does not allow renewal with an expired certificate (renewal policy recovery_window_days is 0)');
      }
      if (!withinRecoveryWindow(record.not_after, policy, now)) {
        throw new AppError('RECOVERY_WINDOW_PASSED', `the certificate expired at ${record.not_after}, more than the tenant's recovery window (${policy.recovery_window_days} days) ago: the device needs a new enrollment`, { recovery_window_days: policy.recovery_window_days });
      }
      if (await deps.store.wasImported(presented.tenantId, record.id)) {
        throw new AppError('RECOVERY_NOT_ALLOWED', 'only a certificate certfleet issued may renew after expiry; this one was imported');
      }
      return { ...presented, recovery: true as const };
    });
  }

  /**
   * The device's newer certificates, if any, make the expired one superseded, except: the pending
   * rotation this device's own recovery started (renew() answers a retry), or the one certificate
   * its earlier recovery got, for the same key (a retry after a lost answer gets it back).
   */
  async function supersession(device: RecoveringDevice, csrPem: string): Promise<{ kind: 'none' | 'own-rotation' } | { kind: 'replay'; id: number; certPem: string } | { kind: 'superseded'; newer: number[] }> {
    const newer = await deps.store.newerCertificates(device.tenantId, device.deviceId, device.certificate.id);
    if (newer.length === 0) return { kind: 'none' };
    const pending = await deps.store.pendingRotation(device.tenantId, device.deviceId);
    if (pending && pending.startedBy === device.actorId && pending.oldCertificateIds.includes(device.certificate.id) && newer.every((c) => c.id === pending.newCertificateId)) {
      return { kind: 'own-rotation' };
    }
    const [only] = newer;
    if (newer.length === 1 && only !== undefined && only.status === 'ACTIVE' && (await sameKey(csrPem, only.certPem))) return { kind: 'replay', id: only.id, certPem: only.certPem };
    return { kind: 'superseded', newer: newer.map((c) => c.id) };
  }

  /**
   * A renewal of an authenticated device (its certificate ACTIVE and unexpired, or a recovery the
   * tenant admitted). Every refusal (the CSR invalid, weak or for a compromised key, a pending
   * rotation for another key, the certificate superseded, ...) is audited with the presenting
   * certificate's identity (`refusal`: the action), and nothing is issued.
   */
  async function renew(
    device: AuthenticatedDevice,
    csr: CsrInput,
    via: RenewalTransport,
    details: Record<string, unknown> = {},
    refusal: RenewalRefusalAction = 'certificate.renewal_refused',
  ): Promise<RenewalResult> {
    return auditingRefusals(device, refusal, { transport: via, ...details }, async () => {
      const csrPem = typeof csr === 'string' ? csr : csr();
      const { policy, validityDaysSet } = await deps.store.renewalPolicy(device.tenantId);
      // A certificate a completed renewal replaced (left to expire, revoke_superseded false) renews nothing more.
      const newer = await deps.store.supersededBy(device.tenantId, device.certificate.id);
      if (newer !== null) {
        throw new AppError('CERTIFICATE_SUPERSEDED', `this certificate was replaced by certificate ${newer}: renew with that one`, { new_certificate_id: newer });
      }
      const result = await deps.useCases.startRotation(actorOf(device), device.deviceId, {
        // The tenant's validity when it chose one, else the lifetime of the certificate being replaced.
        validityDays: validityDaysSet ? undefined : validityDaysOf(device),
        revokeOldAfterHours: null,
        key: { kind: 'csr', csrPem },
        revokeOld: policy.revoke_superseded,
      });
      if (result.outcome === 'pending') return replay(device, csrPem, result.pending, result.newCertificatePem);
      const rotated = result.rotation;
      return {
        certificate_id: rotated.new_certificate.id,
        cert_pem: rotated.cert_pem,
        ca_cert_pem: rotated.ca_cert_pem,
        rotation: {
          new_certificate_id: rotated.new_certificate.id,
          old_certificate_ids: rotated.old_certificates.map((c) => c.id),
          scheduled_revoke_at: rotated.old_certificates[0]?.scheduled_revoke_at ?? null,
        },
        replayed: false,
      };
    });
  }

  const recoveryIdentity = (device: RecoveringDevice, via: RenewalTransport) => ({
    device_id: device.deviceId,
    certificate_id: device.certificate.id,
    fingerprint_sha256: device.certificate.fingerprint_sha256,
    serial_number: device.certificate.serial_number,
    not_after: device.certificate.not_after,
    transport: via,
  });

  async function recoverDevice(device: RecoveringDevice, csr: CsrInput, via: RenewalTransport, details: Record<string, unknown> = {}): Promise<RenewalResult> {
    const now = deps.clock.now();
    if (Date.parse(device.certificate.not_after) > now.getTime()) return renew(device, csr, via, details);
    return auditingRefusals(device, 'certificate.recovery_refused', { transport: via, ...details }, async () => {
      const csrPem = typeof csr === 'string' ? csr : csr();
      const state = await supersession(device, csrPem);
      if (state.kind === 'superseded') {
        throw new AppError('CERTIFICATE_SUPERSEDED', 'the device has a newer certificate than this expired one: it cannot renew with it', { newer_certificate_ids: state.newer });
      }
      const result: RenewalResult =
        state.kind === 'replay'
          ? {
              certificate_id: state.id,
              cert_pem: state.certPem,
              ca_cert_pem: deps.authority.issuerPemOf(state.certPem) ?? deps.authority.caCertPem(device.tenantId),
              rotation: { new_certificate_id: state.id, old_certificate_ids: [], scheduled_revoke_at: null },
              replayed: true,
            }
          : await renew(device, csrPem, via, details, 'certificate.recovery_refused');
      await deps.store.recordAudit({
        tenantId: device.tenantId,
        actor: device.actorId,
        action: 'certificate.recovered',
        targetType: 'certificate',
        targetId: device.certificate.id,
        details: {
          ...recoveryIdentity(device, via),
          ...details,
          expired_for_seconds: Math.floor((now.getTime() - Date.parse(device.certificate.not_after)) / 1000),
          new_certificate_id: result.certificate_id,
          replayed: result.replayed,
        },
        at: now,
      });
      return result;
    });
  }

  const actorOf = (device: { tenantId: string; deviceId: string }): Actor => ({ id: deviceActorId(device.tenantId, device.deviceId), tenantId: device.tenantId });

  async function sameKey(csrPem: string, certPem: string): Promise<boolean> {
    const requested = await deps.keys.publicKeyFromCsr(csrPem);
    const issued = spkiOf(publicKeyFromSpki(new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' })));
    return Buffer.compare(requested.spkiDer, issued) === 0;
  }

  /** A device asking again for the rotation it started, with the same key, gets the same certificate. */
  async function replay(device: AuthenticatedDevice, csrPem: string, pending: PendingRotationView, newCertPem: string): Promise<RenewalResult> {
    if (pending.started_by !== device.actorId || !(await sameKey(csrPem, newCertPem))) throw rotationPending(pending);
    return {
      certificate_id: pending.new_certificate.id,
      cert_pem: newCertPem,
      ca_cert_pem: deps.authority.issuerPemOf(newCertPem) ?? deps.authority.caCertPem(device.tenantId),
      rotation: {
        new_certificate_id: pending.new_certificate.id,
        old_certificate_ids: pending.old_certificates.map((c) => c.id),
        scheduled_revoke_at: pending.next_revoke_at,
      },
      replayed: true,
    };
  }

  /**
   * The device behind a certificate it presented. `via`: for a renewal, whose refusal of a
   * certificate certfleet knows (revoked, expired) is audited (`certificate.renewal_refused`);
   * an unknown certificate leaves no trace (anyone may present one).
   */
  async function authenticate(certDer: Uint8Array, via?: RenewalTransport, details: Record<string, unknown> = {}): Promise<AuthenticatedDevice> {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(certDer);
    } catch {
      throw refused('not a certificate');
    }
    const names = splitCommonName(commonNameOf(cert) ?? '');
    if (!names) throw refused('the subject is not tenant/device');
    const record = await deps.store.certificateByFingerprint(names.tenantId, fingerprintOfDer(cert.raw));
    const actorId = deviceActorId(names.tenantId, names.deviceId);
    if (via === undefined || !record || record.device_id !== names.deviceId) {
      return { ...names, certificate: checkPresentedCertificate(record, names.deviceId, deps.clock.now()), actorId };
    }
    const presented = { ...names, certificate: record, actorId };
    return auditingRefusals(presented, 'certificate.renewal_refused', { transport: via, ...details }, async () => ({
      ...presented,
      certificate: checkPresentedCertificate(record, names.deviceId, deps.clock.now()),
    }));
  }

  return {
    /** The device behind a certificate it proved possession of (TLS or broker mTLS). */
    authenticate,

    /**
     * The device behind a signed MQTT renewal request (the broker does not say who published):
     * its current certificate, issued by this Device CA, known, ACTIVE, unexpired and unrevoked,
     * whose CN is the topic's; a fresh signature of its key over the request; not a replay.
     */
    async authenticateSignedRequest(topicCommonName: string, request: SignedRenewalRequest): Promise<AuthenticatedDevice> {
      let cert: X509Certificate;
      try {
        cert = new X509Certificate(request.certPem);
      } catch {
        throw refused('cert_pem is not a certificate');
      }
      if (!deps.authority.issuerPemOf(request.certPem)) throw refused('cert_pem was not issued by a Device CA certfleet trusts');
      const details = { request_id: request.requestId.slice(0, 200) };
      if (commonNameOf(cert) !== topicCommonName) return refuseForeignCertificate(topicCommonName, cert, 'certificate.renewal_refused', { transport: 'mqtt', ...details });
      const device = await authenticate(cert.raw, 'mqtt', details);
      await auditingRefusals(device, 'certificate.renewal_refused', { transport: 'mqtt', ...details }, () => checkSignedRequest(cert, device, request, ''));
      return device;
    },

    /**
     * The device behind a broker username (its certificate CN): the broker's mutual TLS and ACL
     * proved the sender holds an unrevoked certificate of that CN; certfleet adds that the device
     * still has an ACTIVE, unexpired one.
     */
    async authenticateCommonName(commonName: string): Promise<AuthenticatedDevice> {
      const names = splitCommonName(commonName);
      if (!names) throw refused('the username is not tenant/device');
      const record = await deps.store.latestActiveCertificate(names.tenantId, names.deviceId);
      const certificate = checkPresentedCertificate(record, names.deviceId, deps.clock.now());
      return { ...names, certificate, actorId: deviceActorId(names.tenantId, names.deviceId) };
    },

    /**
     * MQTT confirmation: `signature` is the new key's signature (SHA-256) over
     * `certfleet-confirm:<requestId>`, proof that the device holds and uses its new certificate.
     */
    async confirmWithSignature(device: AuthenticatedDevice, requestId: string, signatureBase64: string) {
      return auditingRefusals(device, 'certificate.renewal_refused', { transport: 'mqtt', request_id: requestId.slice(0, 200), step: 'confirm' }, async () => {
        const pending = await deps.store.pendingRotation(device.tenantId, device.deviceId);
        if (!pending || pending.startedBy !== device.actorId) {
          throw new AppError('NO_PENDING_ROTATION', `device ${device.deviceId} has no pending rotation it started`);
        }
        const signature = Buffer.from(signatureBase64, 'base64');
        const signed = Buffer.from(confirmationText(requestId));
        let valid = false;
        try {
          valid = signature.length > 0 && verify('sha256', signed, new X509Certificate(pending.newCertPem).publicKey, signature);
        } catch {
          valid = false;
        }
        if (!valid) throw new AppError('FORBIDDEN', 'the confirmation is not signed by the key of the new certificate');
        const confirmed = await deps.useCases.confirmRotation(actorOf(device), device.deviceId);
        await deps.store.markConfirmedVia(device.tenantId, pending.newCertificateId, 'mqtt');
        // Empty when the tenant lets replaced certificates expire (revoke_superseded false).
        return { new_certificate_id: pending.newCertificateId, revoked_certificate_ids: confirmed.revoked_certificates.map((c) => c.id) };
      });
    },

    renew,

    /**
     * When the device should renew this certificate (its tenant's renewal window, jittered per
     * certificate): the EST header Certfleet-Renewal-Due. null for a certificate without a tenant/device CN.
     */
    async renewalDue(cert: Uint8Array | string): Promise<Date | null> {
      const x509 = new X509Certificate(cert);
      const names = splitCommonName(commonNameOf(x509) ?? '');
      if (!names) return null;
      const { policy } = await deps.store.renewalPolicy(names.tenantId);
      return renewalSchedule({ not_before: new Date(x509.validFrom), not_after: new Date(x509.validTo), fingerprint_sha256: fingerprintOfDer(x509.raw) }, policy).dueAt;
    },

    /** certfleet's clock: the server_time of MQTT answers. */
    now: () => deps.clock.now(),

    /** The CN of a certificate (null when it is not one). */
    commonNameOf(cert: Uint8Array | string): string | null {
      try {
        return commonNameOf(new X509Certificate(cert));
      } catch {
        return null;
      }
    },

    /** The certificate's notAfter has passed by certfleet's clock. */
    hasExpired(certDer: Uint8Array | string): boolean {
      try {
        return Date.parse(new X509Certificate(certDer).validTo) <= deps.clock.now().getTime();
      } catch {
        return false;
      }
    },

    /**
     * Renewal with an expired certificate (EST: the TLS client certificate TLS refused only as
     * expired; MQTT: the certificate of a signed recovery request): identifyExpired and admitExpired, then a
     * renewal like any other, audited `certificate.recovered` (or `certificate.recovery_refused`).
     */
    async recover(certDer: Uint8Array | string, csr: CsrInput, via: RenewalTransport): Promise<RenewalResult> {
      let cert: X509Certificate;
      try {
        cert = new X509Certificate(certDer);
      } catch {
        throw refused('not a certificate');
      }
      return recoverDevice(await admitExpired(await identifyExpired(cert), via), csr, via);
    },

    /**
     * MQTT recovery (the recovery listener: no client certificate; or a session opened before the
     * certificate expired, on its device's topic `topicCommonName`): the request carries the
     * expired certificate and a fresh signature of its key over the request, exactly like a
     * renewal request; nothing in the recovery topic names the device, the certificate does.
     * Every refusal of a certificate certfleet knows is audited (`certificate.recovery_refused`).
     */
    async recoverWithSignedRequest(request: SignedRenewalRequest, topicCommonName?: string): Promise<RenewalResult> {
      let cert: X509Certificate;
      try {
        cert = new X509Certificate(request.certPem);
      } catch {
        throw refused('cert_pem is not a certificate');
      }
      const details = { request_id: request.requestId.slice(0, 200) };
      if (topicCommonName !== undefined && commonNameOf(cert) !== topicCommonName) {
        return refuseForeignCertificate(topicCommonName, cert, 'certificate.recovery_refused', { transport: 'mqtt', ...details });
      }
      const presented = await identifyExpired(cert);
      // The signature first: the tenant's recovery rules are told only to the key's holder.
      await auditingRefusals(presented, 'certificate.recovery_refused', { transport: 'mqtt', ...details }, () =>
        checkSignedRequest(cert, presented, request, ' (server_time in this answer)'),
      );
      return recoverDevice(await admitExpired(presented, 'mqtt', details), request.csrPem, 'mqtt', details);
    },

    /**
     * The device used the new certificate of a rotation it started: revoke the old ones now
     * (superseded) and record how. Returns true when this use confirmed a rotation.
     */
    async confirmByUse(device: AuthenticatedDevice, via: RenewalTransport): Promise<boolean> {
      const pending = await deps.store.pendingRotation(device.tenantId, device.deviceId);
      if (!pending || pending.newCertificateId !== device.certificate.id || pending.startedBy !== device.actorId) return false;
      try {
        await deps.useCases.confirmRotation(actorOf(device), device.deviceId);
      } catch (e) {
        if (isAppError(e) && e.code === 'NO_PENDING_ROTATION') return false; // confirmed concurrently
        throw e;
      }
      await deps.store.markConfirmedVia(device.tenantId, pending.newCertificateId, via);
      return true;
    },

    /** A one-time secret for the device's first enrollment (EST simpleenroll), shown once. */
    async createEnrollmentToken(actor: Actor, deviceId: string, input: { expiresInHours: number }) {
      assertDeviceId(deviceId);
      if (!Number.isInteger(input.expiresInHours) || input.expiresInHours < 1 || input.expiresInHours > ENROLLMENT_TOKEN_MAX_HOURS) {
        throw new AppError('VALIDATION_FAILED', `expires_in_hours must be an integer from 1 to ${ENROLLMENT_TOKEN_MAX_HOURS}`);
      }
      const token = `cfe_${randomBytes(24).toString('base64url')}`;
      const now = deps.clock.now();
      const record = await deps.store.createEnrollmentToken({
        tenantId: actor.tenantId,
        deviceId,
        tokenSha256: sha256(token),
        expiresAt: new Date(now.getTime() + input.expiresInHours * HOUR_MS),
        createdBy: actor.id,
        now,
      });
      if (!record) throw new AppError('DEVICE_NOT_FOUND', `device ${deviceId} not found`);
      return {
        enrollment_token: { ...record, tenant_id: actor.tenantId },
        token,
        username: `${actor.tenantId}/${deviceId}`,
        warning: 'Save the token now -- it will NOT be shown again. It is valid for one enrollment.',
      };
    },

    /** First enrollment: `tenant/device` with its one-time token, and a CSR; a plain issue (no rotation). */
    async enrollWithToken(commonName: string, token: string, csrPem: string) {
      const names = splitCommonName(commonName);
      if (!names) throw new AppError('UNAUTHENTICATED', 'the EST username must be tenant/device');
      const now = deps.clock.now();
      // The CSR is checked first so a garbage request does not burn the token.
      await deps.keys.publicKeyFromCsr(csrPem);
      if (!(await deps.store.consumeEnrollmentToken(names.tenantId, names.deviceId, sha256(token), now))) {
        throw new AppError('UNAUTHENTICATED', 'unknown, used or expired enrollment token');
      }
      const actor: Actor = { id: deviceActorId(names.tenantId, names.deviceId), tenantId: names.tenantId };
      // No validityDays: the tenant's renewal policy (validity_days), capped at the CA's notAfter.
      const issued = await deps.useCases.issueCertificate(actor, names.deviceId, { key: { kind: 'csr', csrPem } });
      return { certificate_id: issued.certificate.id, cert_pem: issued.cert_pem, ca_cert_pem: issued.ca_cert_pem };
    },
  };
}

/** What a device signs with its current key to ask for a renewal over MQTT (docs/device-renewal.md). */
export const renewalSigningText = (requestId: string, signedAt: number, csrPem: string) => `certfleet-renew:${requestId}:${signedAt}\n${csrPem}`;

/** What a device signs with its new key to confirm a rotation over MQTT. */
export const confirmationText = (requestId: string) => `certfleet-confirm:${requestId}`;

export type DeviceRenewal = ReturnType<typeof createDeviceRenewal>;

/** PKCS#10 DER (as EST sends it, base64) to PEM for the CSR pipeline. */
export const csrPemOf = (der: Uint8Array): string => toPem('CERTIFICATE REQUEST', der);
