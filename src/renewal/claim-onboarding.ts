/**
 * Factory (claim) onboarding: a device leaves the factory with a claim certificate issued by its
 * manufacturer's CA. The tenant registers that CA's certificate (never its key) and a provisioning
 * policy; the device presents its claim certificate (EST simpleenroll over mutual TLS, or a signed
 * MQTT provisioning request) with a CSR for its own new key, and certfleet registers the device
 * and issues its first operational certificate. Every decision (issued, repeated, refused) is an
 * audit event; a refused request changes nothing else, and nothing is issued.
 *
 * One claim certificate onboards one device id: a second device id is refused with
 * CLAIM_CERT_SHARED and raises the CLAIM_CERT_SHARED alert (a cloned or shared factory identity).
 * The same device asking again with the same claim and the same key gets the same certificate
 * back (a lost answer, retried: nothing new is issued); with another key it is refused with
 * CLAIM_ALREADY_ENROLLED: once onboarded, a device renews with its operational certificate.
 */
import { X509Certificate, createHash, createHmac, randomUUID, verify } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { Actor, CertificateAuthority, KeySource, SecretSealer } from '../app/ports.ts';
import type { UseCases } from '../app/use-cases.ts';
import { createRefusalAuditBudget } from '../domain/refusal-audit-budget.ts';
import { NOT_BEFORE_SKEW_MS } from '../domain/certificate.ts';
import type { Clock } from '../domain/clock.ts';
import { AppError, isAppError } from '../domain/errors.ts';
import { isValidId } from '../domain/identifiers.ts';
import { assertWebhookUrl, DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER } from '../domain/notification-policy.ts';
import {
  DEFAULT_PROVISIONING_POLICY,
  deriveDeviceId,
  isAdmitted,
  normalizeSerial,
  validateProvisioningPolicy,
  type ClaimFacts,
  type ProvisioningPolicy,
} from '../domain/provisioning-policy.ts';
import { pemBlocks } from '../pki/pem.ts';
import { x509 } from '../pki/x509.ts';
import { boundedCapture, RegexTimeoutError } from '../support/bounded-regex.ts';
import type { ClaimCaRecord, ClaimEnrollmentRecord, ClaimStore, StoredClaimCa } from './ports.ts';

/** The approval webhook's answer (src/webhooks/approval-client.ts). */
export type ApprovalClient = (request: { url: string; body: string; headers: Record<string, string>; timeoutMs: number }) => Promise<{
  approved: boolean;
  reason: string | null;
  status: number | null;
  timedOut: boolean;
}>;

export interface ClaimOnboardingDeps {
  store: ClaimStore;
  useCases: Pick<UseCases, 'registerDevice' | 'issueCertificate'>;
  authority: Pick<CertificateAuthority, 'caCertPem' | 'trustedCaPems' | 'issuerPemOf'>;
  keys: Pick<KeySource, 'publicKeyFromCsr'>;
  clock: Clock;
  /** Seals the approval webhook's secret at rest (the notification webhooks' key). */
  secrets: Pick<SecretSealer, 'seal' | 'open'>;
  approve: ApprovalClient;
  settings: { webhookAllowPrivateNetworks: boolean };
  /** Told after a claim CA was added or removed (the EST listener's client CA list follows). */
  onClaimCasChanged?: () => void;
}

export type ClaimTransport = 'est' | 'mqtt';

/** An MQTT provisioning request: signed with the claim certificate's key (the broker does not say who published). */
export interface SignedProvisioningRequest {
  requestId: string;
  signedAt: number;
  signature: string;
}

export interface ClaimEnrollmentResult {
  device_id: string;
  certificate_id: number;
  cert_pem: string;
  ca_cert_pem: string;
  /** true: the answer to a repeated request (the certificate issued before, nothing new). */
  replayed: boolean;
}

export const PROVISIONING_SIGNATURE_WINDOW_MS = 5 * 60_000;
/** How long a signed request is remembered: past the window either side, with a margin (a replay older than the window is refused by its signed_at). */
const SIGNED_REQUEST_MEMORY_MS = 3 * PROVISIONING_SIGNATURE_WINDOW_MS;
const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;
export const APPROVAL_EVENT = 'provisioning.approval_requested';
export const APPROVAL_SECRET_WARNING =
  'Save the approval secret now -- it will NOT be shown again. It signs every approval request (X-Certfleet-Signature: sha256=HMAC-SHA256(secret, raw body)).';
/** The approval secret's AEAD context: a tenant has one policy, so one fixed row id. */
const APPROVAL_SEAL_ID = 0;
const SHARED_ALERT_SEVERITY = 2;
/** How long the request issuing a claim's first certificate holds its binding (a crashed replica's lease expires). */
export const CLAIM_ISSUING_LEASE_MS = 60_000;
/** How long a request for the same claim and device waits for the one issuing (on another replica). */
const CLAIM_ISSUING_WAIT_MS = 30_000;

/** What a device signs with its claim key to ask for provisioning over MQTT. */
export const provisioningSigningText = (requestId: string, signedAt: number, csrPem: string) => `certfleet-provision:${requestId}:${signedAt}\n${csrPem}`;

/** @peculiar/x509 wants bytes over a plain ArrayBuffer. */
const copy = (bytes: Uint8Array): Uint8Array<ArrayBuffer> => new Uint8Array(bytes);
const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');
const claimActorId = (fingerprint: string) => `claim:sha256:${fingerprint}`;

interface ParsedClaim {
  cert: X509Certificate;
  fingerprint: string;
  facts: ClaimFacts;
  subject: string;
  issuer: string;
  spkiSha256: string;
}

/** A certificate read by Node (OpenSSL) and by @peculiar/x509; either refusing it is `code`, a 4xx. */
function parseBoth(der: Uint8Array, code: 'CLAIM_CA_UNKNOWN' | 'INVALID_CERTIFICATE', message: string): { cert: X509Certificate; parsed: x509.X509Certificate } {
  try {
    return { cert: new X509Certificate(der), parsed: new x509.X509Certificate(copy(der)) };
  } catch {
    throw new AppError(code, message);
  }
}

function parseClaim(der: Uint8Array): ParsedClaim {
  const { cert, parsed } = parseBoth(der, 'CLAIM_CA_UNKNOWN', 'the claim certificate is not a parseable X.509 certificate');
  const san = { dns: [] as string[], uri: [] as string[], email: [] as string[] };
  const names = parsed.getExtension(x509.SubjectAlternativeNameExtension)?.names.items ?? [];
  for (const name of names) {
    if (name.type === 'dns') san.dns.push(name.value);
    else if (name.type === 'url') san.uri.push(name.value);
    else if (name.type === 'email') san.email.push(name.value);
  }
  return {
    cert,
    fingerprint: sha256(cert.raw),
    facts: { commonName: parsed.subjectName.getField('CN')[0] ?? null, serialHex: normalizeSerial(parsed.serialNumber) ?? parsed.serialNumber.toLowerCase(), san },
    subject: parsed.subject,
    issuer: parsed.issuer,
    spkiSha256: sha256(cert.publicKey.export({ type: 'spki', format: 'der' })),
  };
}

/** The CA certificate of a PEM body: exactly one certificate, a CA (basicConstraints cA, keyCertSign when KeyUsage is present), no key. */
function parseCaCertificate(pem: string, now: Date): { cert: X509Certificate; parsed: x509.X509Certificate; pem: string } {
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) {
    throw new AppError('VALIDATION_FAILED', "ca_cert_pem holds a private key: send the manufacturer's CA certificate only; certfleet never needs its key");
  }
  const blocks = pemBlocks(pem, 'CERTIFICATE');
  const [der] = blocks;
  if (blocks.length !== 1 || der === undefined) throw new AppError('INVALID_CERTIFICATE', `ca_cert_pem must hold exactly one PEM certificate (found ${blocks.length})`);
  const { cert, parsed } = parseBoth(der, 'INVALID_CERTIFICATE', 'ca_cert_pem is not a parseable X.509 certificate');
  const constraints = parsed.getExtension(x509.BasicConstraintsExtension);
  if (!constraints?.ca) throw new AppError('INVALID_CERTIFICATE', 'ca_cert_pem is not a CA certificate (basicConstraints cA is not set)');
  const usage = parsed.getExtension(x509.KeyUsagesExtension);
  if (usage && (usage.usages & x509.KeyUsageFlags.keyCertSign) === 0) {
    throw new AppError('INVALID_CERTIFICATE', 'ca_cert_pem is not a CA certificate for signing certificates (KeyUsage lacks keyCertSign)');
  }
  if (Date.parse(cert.validTo) <= now.getTime()) throw new AppError('INVALID_CERTIFICATE', `the CA certificate expired on ${new Date(cert.validTo).toISOString()}`);
  return { cert, parsed, pem: `${cert.toString().trim()}\n` };
}

/** A CRL (PEM or base64 DER) signed by the CA; INVALID_CRL otherwise. */
async function parseCrl(crlPem: string, ca: x509.X509Certificate): Promise<{ der: Buffer; crl: x509.X509Crl }> {
  const der = pemBlocks(crlPem, 'X509 CRL')[0] ?? (/^[A-Za-z0-9+/=\s]+$/.test(crlPem) ? Buffer.from(crlPem.replace(/\s+/g, ''), 'base64') : null);
  if (!der || der.length === 0) throw new AppError('INVALID_CRL', 'crl_pem must be a PEM "X509 CRL" (or its base64 DER)');
  let crl: x509.X509Crl;
  try {
    crl = new x509.X509Crl(copy(der));
  } catch {
    throw new AppError('INVALID_CRL', 'crl_pem is not a parseable CRL');
  }
  if (crl.issuer !== ca.subject) throw new AppError('INVALID_CRL', `the CRL was issued by "${crl.issuer}", not by this claim CA ("${ca.subject}")`);
  let valid = false;
  try {
    valid = await crl.verify({ publicKey: ca.publicKey });
  } catch {
    valid = false;
  }
  if (!valid) throw new AppError('INVALID_CRL', "the CRL's signature is not the claim CA's");
  return { der: Buffer.from(der), crl };
}

export function createClaimOnboarding(deps: ClaimOnboardingDeps) {
  const { store } = deps;
  /** The serials of each claim CA's stored CRL, parsed once per upload. */
  const crlCache = new Map<number, { updatedAt: string; serials: Set<string> }>();
  function revokedSerials(ca: StoredClaimCa): Set<string> {
    const cached = crlCache.get(ca.id);
    if (cached && cached.updatedAt === ca.updated_at) return cached.serials;
    const serials = new Set(new x509.X509Crl(copy(ca.crlDer!)).entries.map((e) => normalizeSerial(e.serialNumber) ?? e.serialNumber.toLowerCase()));
    crlCache.set(ca.id, { updatedAt: ca.updated_at, serials });
    return serials;
  }
  /** One enrollment per claim certificate at a time in this process (a retry waits for the first). */
  const inFlight = new Map<string, Promise<unknown>>();

  async function loadPolicy(tenantId: string): Promise<{ policy: ProvisioningPolicy; approvalSecret: string | null; stored: boolean; updated_at: string | null; updated_by: string | null }> {
    const stored = await store.getProvisioningPolicy(tenantId);
    if (!stored) return { policy: DEFAULT_PROVISIONING_POLICY, approvalSecret: null, stored: false, updated_at: null, updated_by: null };
    return {
      policy: validateProvisioningPolicy(stored.policy as Parameters<typeof validateProvisioningPolicy>[0]),
      approvalSecret: stored.approvalSecret,
      stored: true,
      updated_at: stored.updated_at,
      updated_by: stored.updated_by,
    };
  }

  const policyView = (p: Awaited<ReturnType<typeof loadPolicy>>) => ({
    policy: p.policy,
    default: !p.stored,
    approval_secret_set: p.approvalSecret !== null,
    updated_at: p.updated_at,
    updated_by: p.updated_by,
  });

  const caView = (c: ClaimCaRecord | StoredClaimCa): ClaimCaRecord => ({
    id: c.id,
    name: c.name,
    subject: c.subject,
    fingerprint_sha256: c.fingerprint_sha256,
    not_before: c.not_before,
    not_after: c.not_after,
    crl: c.crl,
    created_by: c.created_by,
    created_at: c.created_at,
    updated_at: c.updated_at,
  });

  async function findClaimCa(actor: Actor, id: number): Promise<StoredClaimCa> {
    const ca = (await store.listClaimCas(actor.tenantId)).find((c) => c.id === id);
    if (!ca) throw new AppError('CLAIM_CA_NOT_FOUND', `claim CA ${id} not found`);
    return ca;
  }

  async function withCrl(actor: Actor, ca: ClaimCaRecord, caCert: x509.X509Certificate, crlPem: string, now: Date) {
    const { der, crl } = await parseCrl(crlPem, caCert);
    const updated = await store.setClaimCaCrl(
      actor.tenantId,
      ca.id,
      { der, thisUpdate: crl.thisUpdate, nextUpdate: crl.nextUpdate ?? null, entries: crl.entries.length, now },
      { actor: actor.id, action: 'claim_ca.crl_updated', targetType: 'claim_ca', targetId: ca.id, details: { entries: crl.entries.length, this_update: crl.thisUpdate.toISOString() } },
    );
    if (!updated) throw new AppError('CLAIM_CA_NOT_FOUND', `claim CA ${ca.id} not found`);
    return updated;
  }

  // ---- refusals: audited, then thrown

  interface RefusalContext {
    tenantId: string;
    transport: ClaimTransport;
    claim?: ParsedClaim;
    deviceId?: string;
    /** Audit only for a tenant that uses claim onboarding (an unknown label leaves no trace). */
    audit: boolean;
  }

  /** One claim certificate cannot fill the audit log with refused requests (domain/refusal-audit-budget.ts). */
  const refusalAudits = createRefusalAuditBudget(() => deps.clock.now().getTime());

  async function refuse(ctx: RefusalContext, error: AppError): Promise<never> {
    // Past the claim's budget (every unauthenticated request of a tenant shares one) the refusal is not audited, only counted.
    const admitted = ctx.audit ? refusalAudits.admit(`${ctx.tenantId}\u0000${claimActorId(ctx.claim?.fingerprint ?? 'none')}`) : null;
    if (admitted) {
      const fingerprint = ctx.claim?.fingerprint ?? 'none';
      await store.recordRefusal(ctx.tenantId, deps.clock.now(), {
        actor: claimActorId(fingerprint),
        action: 'claim.enrollment_refused',
        targetType: 'claim_certificate',
        targetId: fingerprint,
        details: {
          code: error.code,
          reason: error.message,
          transport: ctx.transport,
          ...(ctx.claim ? { claim_subject: ctx.claim.subject, claim_issuer: ctx.claim.issuer, claim_serial: ctx.claim.facts.serialHex } : {}),
          ...(ctx.deviceId ? { device_id: ctx.deviceId } : {}),
          ...admitted,
        },
      });
    }
    throw error;
  }

  function verifySignedRequest(claim: ParsedClaim, csrPem: string, signed: SignedProvisioningRequest): AppError | null {
    if (!REQUEST_ID.test(signed.requestId)) return new AppError('VALIDATION_FAILED', 'request_id must be 1 to 128 letters, digits, . _ -');
    if (!Number.isSafeInteger(signed.signedAt) || Math.abs(deps.clock.now().getTime() - signed.signedAt * 1000) > PROVISIONING_SIGNATURE_WINDOW_MS) {
      return new AppError('REPLAYED_REQUEST', `signed_at must be the signing time in Unix seconds, within ${PROVISIONING_SIGNATURE_WINDOW_MS / 60_000} minutes of the server clock`);
    }
    let valid = false;
    try {
      const signature = Buffer.from(signed.signature, 'base64');
      valid = signature.length > 0 && verify('sha256', Buffer.from(provisioningSigningText(signed.requestId, signed.signedAt, csrPem)), claim.cert.publicKey, signature);
    } catch {
      valid = false;
    }
    return valid ? null : new AppError('FORBIDDEN', "the signature is not the claim certificate key's over the request");
  }

  async function askApproval(
    policy: ProvisioningPolicy,
    sealedSecret: string | null,
    tenantId: string,
    deviceId: string,
    claim: ParsedClaim,
    claimCa: StoredClaimCa,
    csrKeySha256: string,
    transport: ClaimTransport,
  ): Promise<AppError | null> {
    const hook = policy.approval_webhook;
    if (!hook) return null;
    if (!sealedSecret) return new AppError('APPROVAL_REFUSED', 'the approval webhook has no secret: put the provisioning policy again');
    let secret: string;
    try {
      secret = deps.secrets.open(sealedSecret, { tenantId, webhookId: APPROVAL_SEAL_ID });
    } catch {
      // Sealed under a webhook secret key this process no longer has (WEBHOOK_SECRET_KEY rotated).
      return new AppError('APPROVAL_REFUSED', 'the approval webhook secret cannot be opened with the current WEBHOOK_SECRET_KEY: put the provisioning policy again with rotate_approval_secret');
    }
    const requestId = randomUUID();
    const body = JSON.stringify({
      event: APPROVAL_EVENT,
      request_id: requestId,
      tenant_id: tenantId,
      device_id: deviceId,
      transport,
      claim: {
        subject: claim.subject,
        issuer: claim.issuer,
        serial_number: claim.facts.serialHex,
        fingerprint_sha256: claim.fingerprint,
        common_name: claim.facts.commonName,
        not_after: new Date(claim.cert.validTo).toISOString(),
        claim_ca_id: claimCa.id,
      },
      csr_key_sha256: csrKeySha256,
      requested_at: deps.clock.now().toISOString(),
    });
    const answer = await deps.approve({
      url: hook.url,
      body,
      timeoutMs: hook.timeout_ms,
      headers: {
        [SIGNATURE_HEADER]: `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`,
        [EVENT_HEADER]: APPROVAL_EVENT,
        [DELIVERY_HEADER]: requestId,
      },
    });
    if (answer.approved) return null;
    return new AppError('APPROVAL_REFUSED', `the tenant's approval webhook ${answer.timedOut ? 'did not answer in time' : 'refused'}: ${answer.reason ?? 'no reason given'}`, {
      timed_out: answer.timedOut,
      status: answer.status,
    });
  }

  async function enroll(tenantId: string, claimDer: Uint8Array, csrPem: string, transport: ClaimTransport, signed?: SignedProvisioningRequest): Promise<ClaimEnrollmentResult> {
    const cas = isValidId(tenantId) ? await store.listClaimCas(tenantId) : [];
    const ctx: RefusalContext = { tenantId, transport, audit: cas.length > 0 };
    let claim: ParsedClaim;
    try {
      claim = parseClaim(claimDer);
    } catch (e) {
      return refuse(ctx, e as AppError);
    }
    ctx.claim = claim;
    const claimCa = cas.find((ca) => {
      const caCert = new X509Certificate(ca.ca_cert_pem);
      return claim.cert.checkIssued(caCert) && claim.cert.verify(caCert.publicKey);
    });
    if (!claimCa) return refuse(ctx, new AppError('CLAIM_CA_UNKNOWN', `the claim certificate was not issued by a claim CA registered for tenant ${tenantId.slice(0, 64)}`));
    const now = deps.clock.now();
    // A claim minted moments ago by a factory whose clock runs ahead is still accepted (the same skew certfleet backdates by).
    if (Date.parse(claim.cert.validFrom) > now.getTime() + NOT_BEFORE_SKEW_MS || Date.parse(claim.cert.validTo) <= now.getTime()) {
      return refuse(ctx, new AppError('CLAIM_CERT_EXPIRED', `the claim certificate is valid from ${new Date(claim.cert.validFrom).toISOString()} to ${new Date(claim.cert.validTo).toISOString()} only`));
    }
    if (Date.parse(claimCa.not_after) <= now.getTime()) {
      return refuse(ctx, new AppError('CLAIM_CERT_EXPIRED', `the claim certificate's CA (claim CA ${claimCa.id}) expired on ${claimCa.not_after}`));
    }
    if (claimCa.crlDer && revokedSerials(claimCa).has(claim.facts.serialHex)) {
      return refuse(ctx, new AppError('CLAIM_CERT_REVOKED', "the claim certificate is on its manufacturer's CRL"));
    }
    if (signed) {
      const error = verifySignedRequest(claim, csrPem, signed);
      if (error) return refuse(ctx, error);
      if (!(await store.recordClaimRequest(tenantId, claim.fingerprint, signed.requestId, signed.signedAt, now, new Date(now.getTime() - SIGNED_REQUEST_MEMORY_MS)))) {
        return refuse(ctx, new AppError('REPLAYED_REQUEST', 'this signed provisioning request was already received: sign a new one (new request_id, signed_at)'));
      }
    }
    const { policy, approvalSecret } = await loadPolicy(tenantId);
    if (!isAdmitted(policy, claim.facts)) return refuse(ctx, new AppError('CLAIM_NOT_ADMITTED', "the tenant's provisioning policy does not admit this claim certificate (CN or serial number)"));
    let deviceId: string;
    try {
      deviceId = deriveDeviceId(policy, tenantId, claim.facts, (pattern, value) => {
        try {
          return boundedCapture(pattern, value);
        } catch (e) {
          if (e instanceof RegexTimeoutError) throw new AppError('INVALID_DEVICE_ID', `the provisioning policy's device_id.pattern ${e.message}`);
          throw e;
        }
      });
    } catch (e) {
      if (isAppError(e)) return refuse(ctx, e);
      throw e;
    }
    ctx.deviceId = deviceId;

    // The CSR: a valid request for a strong key that is neither the claim key nor a compromised one.
    let csrKeySha256: string;
    try {
      csrKeySha256 = sha256((await deps.keys.publicKeyFromCsr(csrPem)).spkiDer);
    } catch (e) {
      if (isAppError(e)) return refuse(ctx, e);
      throw e;
    }
    if (csrKeySha256 === claim.spkiSha256) {
      return refuse(ctx, new AppError('CLAIM_KEY_REUSED', 'the CSR is for the claim certificate key: generate a new key for the operational certificate (the claim key stays the factory identity)'));
    }
    if (await store.isKeyCompromised(csrKeySha256)) {
      return refuse(ctx, new AppError('KEY_COMPROMISED', 'this public key belongs to a certificate revoked for keyCompromise: generate a new key'));
    }

    // One claim certificate, one device.
    const binding = await store.findClaimEnrollment(tenantId, claim.fingerprint);
    if (binding && binding.device_id !== deviceId) return shared(ctx, claim, binding.device_id, deviceId);
    if (binding?.certificate_id != null) return answerIssued(ctx, binding.certificate_id, claim, deviceId, csrKeySha256, now);
    const device = await store.deviceState(tenantId, deviceId);
    if (device.certificates > 0) {
      return refuse(ctx, new AppError('DEVICE_EXISTS', `device ${deviceId} already has certificates: a claim onboards a new device, or one registered without a certificate`));
    }
    const other = await store.claimEnrollmentOfDevice(tenantId, deviceId);
    if (other && other.claim_fingerprint !== claim.fingerprint) {
      return refuse(ctx, new AppError('DEVICE_EXISTS', `device ${deviceId} is being onboarded with another claim certificate`));
    }

    const approval = await askApproval(policy, approvalSecret, tenantId, deviceId, claim, claimCa, csrKeySha256, transport);
    if (approval) return refuse(ctx, approval);

    // Bind the claim and take its issuing lease, atomically across replicas. Another request issuing
    // for this binding right now (another replica: this process's own wait in enrollWithClaim) is
    // waited for, then its certificate answers this request too, or another key is refused.
    let reserved: ClaimEnrollmentRecord | null = null;
    const waitUntil = Date.now() + CLAIM_ISSUING_WAIT_MS;
    for (let pause = 25; reserved === null; pause = Math.min(pause * 2, 1000)) {
      const reservation = await store.reserveClaimEnrollment({
        tenantId,
        claimFingerprint: claim.fingerprint,
        claimCaId: claimCa.id,
        claimSerial: claim.facts.serialHex,
        claimSubject: claim.subject,
        deviceId,
        transport,
        now,
        leaseMs: CLAIM_ISSUING_LEASE_MS,
      });
      const bound = reservation.binding;
      if (reservation.outcome === 'device_taken') {
        return refuse(ctx, new AppError('DEVICE_EXISTS', `device ${deviceId} is being onboarded with another claim certificate`));
      }
      if (reservation.outcome === 'busy') {
        if (Date.now() + pause > waitUntil) {
          // Still issuing elsewhere after a long wait: nothing was done here; the device asks again.
          return refuse(ctx, new AppError('SERVICE_SATURATED', 'this claim certificate is being onboarded by another request right now; nothing was done: retry shortly', { retry_after_seconds: 5 }));
        }
        await delay(pause);
      } else if (bound.device_id !== deviceId) return shared(ctx, claim, bound.device_id, deviceId);
      else if (reservation.outcome === 'acquired') reserved = bound;
      else if (bound.certificate_id !== null) return answerIssued(ctx, bound.certificate_id, claim, deviceId, csrKeySha256, now);
      else throw new Error('claim enrollment: a binding of this device without a certificate that is neither leased nor leasable');
    }

    const actor: Actor = { id: claimActorId(claim.fingerprint), tenantId };
    try {
      if (!device.exists) {
        try {
          await deps.useCases.registerDevice(actor, { device_id: deviceId, site_id: policy.site_id });
        } catch (e) {
          if (!(isAppError(e) && e.code === 'DEVICE_EXISTS')) throw e;
        }
      }
      // No validityDays: the tenant's renewal policy (validity_days), capped at the CA's notAfter.
      const issued = await deps.useCases.issueCertificate(actor, deviceId, { key: { kind: 'csr', csrPem } });
      await store.completeClaimEnrollment(tenantId, reserved.id, issued.certificate.id, deps.clock.now(), {
        actor: actor.id,
        action: 'claim.enrolled',
        targetType: 'device',
        targetId: deviceId,
        details: {
          certificate_id: issued.certificate.id,
          transport,
          claim_fingerprint: claim.fingerprint,
          claim_subject: claim.subject,
          claim_serial: claim.facts.serialHex,
          claim_ca_id: claimCa.id,
          registered: !device.exists,
          approved_by_webhook: policy.approval_webhook !== null,
        },
      });
      return { device_id: deviceId, certificate_id: issued.certificate.id, cert_pem: issued.cert_pem, ca_cert_pem: issued.ca_cert_pem, replayed: false };
    } catch (e) {
      // Nothing issued: the lease goes back at once, so the device's retry (on any replica) issues.
      await store.releaseClaimEnrollment(tenantId, reserved.id).catch(() => undefined);
      if (isAppError(e)) return refuse(ctx, e);
      throw e;
    }
  }

  /**
   * The claim's binding to this device has its certificate: the same key (a lost answer, retried,
   * possibly on another replica) gets it again while it is ACTIVE; another key is refused.
   */
  async function answerIssued(ctx: RefusalContext, certificateId: number, claim: ParsedClaim, deviceId: string, csrKeySha256: string, now: Date): Promise<ClaimEnrollmentResult> {
    const issued = await store.certificateWithPem(ctx.tenantId, certificateId);
    const issuedKey = issued ? sha256(new X509Certificate(issued.cert_pem).publicKey.export({ type: 'spki', format: 'der' })) : null;
    if (issued && issued.status === 'ACTIVE' && issuedKey === csrKeySha256) {
      await store.recordRefusal(ctx.tenantId, now, {
        actor: claimActorId(claim.fingerprint),
        action: 'claim.enrollment_repeated',
        targetType: 'certificate',
        targetId: issued.id,
        details: { device_id: deviceId, transport: ctx.transport, claim_fingerprint: claim.fingerprint },
      });
      return { device_id: deviceId, certificate_id: issued.id, cert_pem: issued.cert_pem, ca_cert_pem: deps.authority.issuerPemOf(issued.cert_pem) ?? deps.authority.caCertPem(ctx.tenantId), replayed: true };
    }
    return refuse(
      ctx,
      new AppError('CLAIM_ALREADY_ENROLLED', `this claim certificate already onboarded device ${deviceId}: it renews with its operational certificate (EST simplereenroll or MQTT renewal), not with the claim`),
    );
  }

  async function shared(ctx: RefusalContext, claim: ParsedClaim, boundTo: string, asked: string): Promise<never> {
    await store.raiseSharedClaimAlert({
      tenantId: ctx.tenantId,
      claimFingerprint: claim.fingerprint,
      deviceId: boundTo,
      severity: SHARED_ALERT_SEVERITY,
      summary: `claim certificate ${claim.facts.serialHex} (${claim.subject}) onboarded ${boundTo} and was presented again for ${asked}`,
      details: { claim_fingerprint: claim.fingerprint, claim_subject: claim.subject, claim_serial: claim.facts.serialHex, bound_device_id: boundTo, requested_device_id: asked },
      now: deps.clock.now(),
    });
    return refuse(ctx, new AppError('CLAIM_CERT_SHARED', `this claim certificate already onboarded another device (${boundTo}): one claim certificate onboards one device`));
  }

  return {
    // ---- tenant administration (routes: tenant-admin for changes)

    async listClaimCas(actor: Actor) {
      return { claim_cas: (await store.listClaimCas(actor.tenantId)).map(caView) };
    },

    async getClaimCa(actor: Actor, id: number) {
      const ca = await findClaimCa(actor, id);
      return { claim_ca: caView(ca), ca_cert_pem: ca.ca_cert_pem };
    },

    async addClaimCa(actor: Actor, input: { ca_cert_pem: string; name?: string | null; crl_pem?: string | null }) {
      const now = deps.clock.now();
      const { cert, parsed, pem } = parseCaCertificate(input.ca_cert_pem, now);
      const fingerprint = sha256(cert.raw);
      let ownCa: string | null = null;
      try {
        ownCa = deps.authority.trustedCaPems();
      } catch {
        ownCa = null;
      }
      const ownCas = ownCa ? (ownCa.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []) : [];
      if (ownCas.some((pem) => sha256(new X509Certificate(pem).raw) === fingerprint)) {
        throw new AppError('VALIDATION_FAILED', "this is certfleet's own Device CA: a claim CA is a manufacturer's CA");
      }
      // The CRL is checked before anything is stored.
      if (input.crl_pem) await parseCrl(input.crl_pem, parsed);
      const created = await store.insertClaimCa(
        { tenantId: actor.tenantId, name: input.name ?? null, caCertPem: pem, subject: parsed.subject, fingerprint, notBefore: new Date(cert.validFrom), notAfter: new Date(cert.validTo), now },
        { actor: actor.id, action: 'claim_ca.created', targetType: 'claim_ca', targetId: 0, details: { subject: parsed.subject, fingerprint_sha256: fingerprint, name: input.name ?? null } },
      );
      if (!created) throw new AppError('CLAIM_CA_EXISTS', 'this CA certificate is registered already as a claim CA of the tenant');
      const result = input.crl_pem ? await withCrl(actor, created, parsed, input.crl_pem, now) : created;
      deps.onClaimCasChanged?.();
      return { claim_ca: caView(result) };
    },

    async putClaimCaCrl(actor: Actor, id: number, input: { crl_pem: string }) {
      const ca = await findClaimCa(actor, id);
      return { claim_ca: caView(await withCrl(actor, ca, new x509.X509Certificate(ca.ca_cert_pem), input.crl_pem, deps.clock.now())) };
    },

    async deleteClaimCa(actor: Actor, id: number) {
      const ca = await findClaimCa(actor, id);
      const deleted = await store.deleteClaimCa(actor.tenantId, id, deps.clock.now(), {
        actor: actor.id,
        action: 'claim_ca.deleted',
        targetType: 'claim_ca',
        targetId: id,
        details: { subject: ca.subject, fingerprint_sha256: ca.fingerprint_sha256 },
      });
      if (!deleted) throw new AppError('CLAIM_CA_NOT_FOUND', `claim CA ${id} not found`);
      deps.onClaimCasChanged?.();
    },

    async getProvisioningPolicy(actor: Actor) {
      return policyView(await loadPolicy(actor.tenantId));
    },

    /**
     * Replaces the policy. A new approval webhook (or a changed URL, or `rotate_approval_secret`)
     * gets a new secret, shown in this answer only.
     */
    async putProvisioningPolicy(actor: Actor, input: Parameters<typeof validateProvisioningPolicy>[0] & { rotate_approval_secret?: boolean }) {
      const policy = validateProvisioningPolicy(input);
      if (policy.approval_webhook) {
        policy.approval_webhook.url = assertWebhookUrl(policy.approval_webhook.url, { allowPrivateNetworks: deps.settings.webhookAllowPrivateNetworks });
      }
      const before = await loadPolicy(actor.tenantId);
      const newSecret =
        policy.approval_webhook && (before.approvalSecret === null || before.policy.approval_webhook?.url !== policy.approval_webhook.url || input.rotate_approval_secret)
          ? `whsec_${randomUUID().replace(/-/g, '')}${randomUUID().replace(/-/g, '')}`
          : null;
      const approvalSecret = !policy.approval_webhook ? null : newSecret ? deps.secrets.seal(newSecret, { tenantId: actor.tenantId, webhookId: APPROVAL_SEAL_ID }) : 'keep';
      const now = deps.clock.now();
      await store.putProvisioningPolicy(
        actor.tenantId,
        { policy, approvalSecret, actor: actor.id, now },
        {
          actor: actor.id,
          action: 'provisioning_policy.updated',
          targetType: 'provisioning_policy',
          targetId: actor.tenantId,
          details: { policy, approval_secret_rotated: newSecret !== null },
        },
      );
      const view = policyView(await loadPolicy(actor.tenantId));
      return newSecret ? { ...view, approval_secret: newSecret, warning: APPROVAL_SECRET_WARNING } : view;
    },

    // ---- devices

    /**
     * A device's first operational certificate, proven by its claim certificate (`claimDer`, whose
     * key the transport proved: TLS client authentication, or `signed` for MQTT).
     */
    async enrollWithClaim(tenantId: string, claimDer: Uint8Array, csrPem: string, transport: ClaimTransport, signed?: SignedProvisioningRequest): Promise<ClaimEnrollmentResult> {
      const key = `${tenantId}\n${sha256(claimDer)}`;
      while (inFlight.has(key)) await inFlight.get(key)!.catch(() => undefined);
      const work = enroll(tenantId, claimDer, csrPem, transport, signed);
      inFlight.set(key, work);
      try {
        return await work;
      } finally {
        inFlight.delete(key);
      }
    },

  };
}

export type ClaimOnboarding = ReturnType<typeof createClaimOnboarding>;
