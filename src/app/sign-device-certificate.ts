import { createHash } from 'node:crypto';
import type { KeyType } from '../domain/certificate.ts';
import { capWarning, deviceValidity } from '../domain/device-validity.ts';
import { assertCommonNameFits, commonNameFor } from '../domain/identifiers.ts';
import { AppError } from '../domain/errors.ts';
import type { AppDeps } from './deps.ts';
import type { Actor, DevicePublicKey, IssuedCertificate } from './ports.ts';
import { deviceNotFound } from './get-device.ts';
import { AlreadyExistsError, ReferenceNotFoundError, type TenantRepositories } from './storage-ports.ts';
import { tenantGroups } from '../support/tenant-groups.ts';

/** Where the device's key comes from: generated here (the key is returned once) or the device's own CSR. */
export type KeyRequest = { kind: 'generate'; keyType: KeyType } | { kind: 'csr'; csrPem: string };

export interface SignedCertificate {
  issued: IssuedCertificate;
  /** SHA-256 (hex) of the certified key's SubjectPublicKeyInfo DER. */
  spkiSha256: string;
  privateKeyPem: string | null;
  signedAt: Date;
  /** Set when notAfter was capped at the CA's notAfter: say so in the response's warning. */
  validityWarning: string | null;
}

/** SHA-256 (hex) of a SubjectPublicKeyInfo DER: how storage knows a key. */
export const spkiSha256 = (spkiDer: Uint8Array): string => createHash('sha256').update(spkiDer).digest('hex');

/**
 * A key may be certified for the device: never one revoked for keyCompromise (in any tenant, as
 * Boulder and the CA/Browser Forum rules require), and never one another device of the tenant
 * holds, unless the tenant allows shared keys. Called in the storing transaction.
 */
export async function assertKeyUsable({ keys }: Pick<TenantRepositories, 'keys'>, tenantId: string, deviceId: string, spki: string): Promise<void> {
  assertKeyStatus(await keys.keyStatus(tenantId, deviceId, spki)); // one round trip
}

export function assertKeyStatus(status: { compromised: boolean; otherDevices: string[]; allowsShared: boolean }): void {
  if (status.compromised) {
    throw new AppError('KEY_COMPROMISED', 'this public key belongs to a certificate revoked for keyCompromise: generate a new key');
  }
  if (status.otherDevices.length > 0 && !status.allowsShared) {
    throw new AppError('KEY_IN_USE', `this public key is already certified for another device (${status.otherDevices.join(', ')}); each device needs its own key`);
  }
}

/** At most this many key checks in one statement. */
const MAX_CHECK_GROUP = 256;
/** Check statements of one tenant in flight at once (as the group commit of issued certificates). */
const CHECKS_IN_FLIGHT = 1;

interface PendingCheck {
  deviceId: string;
  spki: string;
  resolve(): void;
  reject(error: unknown): void;
}

/**
 * assertKeyUsable before signing for a device-supplied key, grouped: concurrent checks of a
 * tenant share one transaction and one statement (CHECKS_IN_FLIGHT groups at once, the checks
 * made meanwhile go together in the next; no timer, an idle tenant's check runs at once, alone).
 * Each member gets the answer it would have had alone; when the group's statement fails, each
 * member is checked alone. For a rotation with the device's CSR (createSignDeviceCertificate); a
 * plain CSR issuance makes this check in the issuance group's storing transaction instead
 * (issued-certificate-store.ts, signAndStore).
 */
export function createKeyPrecheck(storage: AppDeps['storage']) {
  const alone = async (tenantId: string, p: PendingCheck) => {
    try {
      await storage.asTenant(tenantId, (repos) => assertKeyUsable(repos, tenantId, p.deviceId, p.spki));
      p.resolve();
    } catch (error) {
      p.reject(error);
    }
  };
  async function flush(tenantId: string, group: PendingCheck[]) {
    let statuses: Awaited<ReturnType<TenantRepositories['keys']['keyStatuses']>> | null = null;
    try {
      statuses = group.length === 1 ? null : await storage.asTenant(tenantId, (repos) => repos.keys.keyStatuses(tenantId, group.map((p) => ({ deviceId: p.deviceId, spkiSha256: p.spki }))));
    } catch {
      statuses = null;
    }
    const got = statuses;
    if (!got || got.length !== group.length) {
      for (const p of group) await alone(tenantId, p);
      return;
    }
    group.forEach((p, i) => {
      try {
        const status = got[i];
        if (status) assertKeyStatus(status);
        p.resolve();
      } catch (error) {
        p.reject(error);
      }
    });
  }
  const add = tenantGroups<PendingCheck>({ maxGroup: MAX_CHECK_GROUP, inFlight: CHECKS_IN_FLIGHT, flush, gatherTurn: true });
  return (tenantId: string, deviceId: string, spki: string): Promise<void> =>
    new Promise<void>((resolve, reject) => add(tenantId, { deviceId, spki, resolve, reject }));
}

/** A request checked and its key known, ready to be signed (prepare, then sign). */
export interface PreparedSigning {
  tenantId: string;
  deviceId: string;
  validityDays: number;
  publicKey: DevicePublicKey;
  /** SHA-256 (hex) of the key's SubjectPublicKeyInfo DER. */
  spkiSha256: string;
  privateKeyPem: string | null;
}

/**
 * The two halves of signing a device certificate: `prepare` (the common name's length, the
 * tenant's issuance limit, the validity, the key: generated here or the device's CSR, its
 * signature and key policy checked) and `sign` (the validity from now, the CA's signature, lint
 * before it). A device-supplied key's check against storage (compromised, another device's) goes
 * between the two: createSignDeviceCertificate makes it alone, the issuance group commit makes it
 * in the group's storing transaction (issued-certificate-store.ts).
 */
export function createDeviceCertificateSigner({ storage, authority, keys, clock, issuanceLimit }: Pick<AppDeps, 'storage' | 'authority' | 'keys' | 'clock' | 'issuanceLimit'>) {
  return {
    /** `requestedDays` undefined: the tenant's renewal policy (validity_days). */
    async prepare(tenantId: string, deviceId: string, requestedDays: number | undefined, key: KeyRequest): Promise<PreparedSigning> {
      assertCommonNameFits(tenantId, deviceId);
      issuanceLimit.take(tenantId);
      const validityDays = requestedDays ?? (await storage.asTenant(tenantId, (repos) => repos.renewalPolicy.getRenewalPolicy(tenantId))).validity_days;
      deviceValidity({ signedAt: clock.now(), validityDays, ca: authority.caValidity(tenantId) }); // fail fast (503) before any key work
      const { publicKey, privateKeyPem } =
        key.kind === 'generate' ? await keys.generate(key.keyType, tenantId) : { publicKey: await keys.publicKeyFromCsr(key.csrPem), privateKeyPem: null };
      return { tenantId, deviceId, validityDays, publicKey, spkiSha256: spkiSha256(publicKey.spkiDer), privateKeyPem };
    },
    async sign(prepared: PreparedSigning): Promise<SignedCertificate> {
      const { tenantId, deviceId, publicKey, validityDays } = prepared;
      const signedAt = clock.now();
      const validity = deviceValidity({ signedAt, validityDays, ca: authority.caValidity(tenantId) });
      const issued = await authority.issue({
        tenantId,
        commonName: commonNameFor(tenantId, deviceId),
        publicKey,
        notBefore: validity.notBefore,
        notAfter: validity.notAfter,
      });
      return { issued, spkiSha256: prepared.spkiSha256, privateKeyPem: prepared.privateKeyPem, signedAt, validityWarning: validity.cappedAtCaNotAfter ? capWarning(validity.notAfter) : null };
    },
  };
}

/**
 * Signs a certificate for tenant/device, a device-supplied key checked against storage before
 * (createKeyPrecheck). Runs before the storing transaction, so no transaction is held open during
 * RSA key generation.
 */
export function createSignDeviceCertificate(deps: Pick<AppDeps, 'storage' | 'authority' | 'keys' | 'clock' | 'issuanceLimit'>) {
  const precheck = createKeyPrecheck(deps.storage);
  const signer = createDeviceCertificateSigner(deps);
  /** `requestedDays` undefined: the tenant's renewal policy (validity_days). */
  return async (tenantId: string, deviceId: string, requestedDays: number | undefined, key: KeyRequest): Promise<SignedCertificate> => {
    const prepared = await signer.prepare(tenantId, deviceId, requestedDays, key);
    // Before the CA signs anything for a device-supplied key (checked again when storing).
    if (key.kind === 'csr') await precheck(tenantId, deviceId, prepared.spkiSha256);
    return signer.sign(prepared);
  };
}

/** Inserts a signed or uploaded certificate and its audit event, in the caller's transaction. */
export async function storeCertificate(
  repos: Pick<TenantRepositories, 'certificates' | 'keys'>,
  actor: Actor,
  deviceId: string,
  cert: IssuedCertificate & { spkiSha256: string },
  at: Date,
  action: string,
  details: Record<string, unknown> = {},
) {
  await assertKeyUsable(repos, actor.tenantId, deviceId, cert.spkiSha256);
  try {
    const record = await repos.certificates.insertCertificate({
      tenantId: actor.tenantId,
      deviceId,
      certPem: cert.certPem,
      fingerprint: cert.fingerprint,
      commonName: commonNameFor(actor.tenantId, deviceId),
      issuer: cert.issuer,
      caId: cert.caId ?? null,
      serialNumber: cert.serialHex,
      keyType: cert.keyType,
      spkiSha256: cert.spkiSha256,
      notBefore: cert.notBefore,
      notAfter: cert.notAfter,
      now: at,
    }, {
      actor: actor.id,
      action,
      targetType: 'certificate',
      details: { device_id: deviceId, fingerprint: cert.fingerprint, serial_number: cert.serialHex, ...details },
    });
    return record;
  } catch (e) {
    if (e instanceof ReferenceNotFoundError) throw deviceNotFound(deviceId);
    if (e instanceof AlreadyExistsError) throw new AppError('CERTIFICATE_EXISTS', 'this certificate is already registered');
    throw e;
  }
}
