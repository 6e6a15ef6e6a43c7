import type { CertificateRecord } from '../domain/certificate.ts';
import { commonNameFor } from '../domain/identifiers.ts';
import type { AppDeps } from './deps.ts';
import type { Actor, IssuedCertificate } from './ports.ts';
import { assertKeyStatus, assertKeyUsable, storeCertificate } from './sign-device-certificate.ts';
import { tenantGroups } from '../support/tenant-groups.ts';

/** At most this many certificates in one group (one statement's arrays). */
export const MAX_GROUP = 256;
/**
 * Groups of one tenant in flight at once: the next group's round trips overlap the previous one's
 * commit (its WAL flush). Their device rows are locked in key order (migration 024's trigger), so
 * two groups touching one device wait for each other, never deadlock.
 */
export const GROUPS_IN_FLIGHT = 2;

type StoredCert = IssuedCertificate & { spkiSha256: string };

/** What a member signed in the group (signAndStore) brings: the certificate, when it was signed, its audit details. */
export interface SignedMember {
  cert: StoredCert;
  at: Date;
  details: Record<string, unknown>;
}

interface Pending {
  actor: Actor;
  deviceId: string;
  action: string;
  /** Set once signed: at once for store(), in the group's transaction for signAndStore(). */
  signed: SignedMember | null;
  /** signAndStore(): the device-supplied key (SHA-256 of its SPKI, hex), checked before `sign` runs. */
  toSign: { spkiSha256: string; sign(): Promise<SignedMember> } | null;
  settled: boolean;
  resolve(record: CertificateRecord): void;
  reject(error: unknown): void;
}

export interface IssuedCertificateStore {
  /** Stores a signed certificate with its audit event (exactly one), as storeCertificate does in its own transaction. */
  store(actor: Actor, deviceId: string, cert: StoredCert, at: Date, action: string, details: Record<string, unknown>): Promise<CertificateRecord>;
  /**
   * For a device-supplied key: the key check (KEY_COMPROMISED, KEY_IN_USE: rejected, nothing
   * signed), then `sign`, then the store, as createSignDeviceCertificate's check before signing
   * and store() would, but the check and the store in the group's one transaction: one check
   * statement for the group's keys, the CA signs the members that passed, one insert statement.
   */
  signAndStore<S extends SignedMember>(actor: Actor, deviceId: string, spkiSha256: string, sign: () => Promise<S>, action: string): Promise<{ record: CertificateRecord; signed: S }>;
}

/**
 * Group commit of issued certificates. Each tenant has at most GROUPS_IN_FLIGHT storing
 * transactions in flight; the certificates signed meanwhile wait and then go together, whatever
 * is queued (up to MAX_GROUP), in the next one: one transaction, one statement inserting every certificate and its
 * audit event, the same key checks as storeCertificate, the device-summary trigger run once. No
 * timer: an idle tenant's certificate is stored at once, alone. Under load the group grows with
 * the commit's latency, so the round trips and the commit's flush are shared.
 *
 * Members with a device-supplied key not yet signed (signAndStore) are checked first in the same
 * transaction (one keyStatuses statement for the group): a member whose key is compromised or
 * another device's is rejected there, before anything is signed for it; the others are signed
 * (lint before signing, as ever), then inserted with the rest. The transaction holds no lock
 * while the CA signs (the check only reads). Two members of the group with one key for
 * different devices: the later one is checked, signed and stored alone after the group, so it
 * sees the first.
 *
 * A member never fails or loses the others: a member whose key checks fail is skipped by the
 * statement and stored alone (raising KEY_COMPROMISED / KEY_IN_USE, or stored when the tenant
 * allows shared keys); when the group's statement fails (an unknown device, a duplicate, a lost
 * connection), nothing of it was stored and every member is stored alone, each with its own
 * outcome (one not yet signed: checked alone, signed, stored alone). Tenant isolation is the
 * tenant transaction's (row-level security), as for one.
 */
export function createIssuedCertificateStore({ storage }: Pick<AppDeps, 'storage'>): IssuedCertificateStore {
  const settle = (p: Pending, outcome: { record: CertificateRecord } | { error: unknown }) => {
    if (p.settled) return;
    p.settled = true;
    if ('record' in outcome) p.resolve(outcome.record);
    else p.reject(outcome.error);
  };
  const signMember = async (p: Pending) => {
    try {
      p.signed = await p.toSign!.sign();
    } catch (error) {
      settle(p, { error });
    }
  };
  const alone = async (p: Pending) => {
    try {
      if (!p.signed) {
        await storage.asTenant(p.actor.tenantId, (repos) => assertKeyUsable(repos, p.actor.tenantId, p.deviceId, p.toSign!.spkiSha256));
        await signMember(p);
        if (!p.signed) return; // its signing failed: settled
      }
      const s = p.signed;
      settle(p, { record: await storage.asTenant(p.actor.tenantId, (repos) => storeCertificate(repos, p.actor, p.deviceId, s.cert, s.at, p.action, s.details)) });
    } catch (error) {
      settle(p, { error });
    }
  };

  async function flush(tenantId: string, group: Pending[]): Promise<void> {
    // Two members with one key for different devices: the statements would not see the first when
    // checking the second. The later ones go alone, after the group.
    const holder = new Map<string, string>();
    const together: Pending[] = [];
    const later: Pending[] = [];
    for (const p of group) {
      const key = p.signed?.cert.spkiSha256 ?? p.toSign!.spkiSha256;
      const device = holder.get(key);
      if (device !== undefined && device !== p.deviceId) later.push(p);
      else {
        holder.set(key, p.deviceId);
        together.push(p);
      }
    }
    let records: (CertificateRecord | null)[] | null = null;
    let inserted: Pending[] = [];
    try {
      records = await storage.asTenant(tenantId, async (repos) => {
        const unsigned = together.filter((p) => !p.signed);
        if (unsigned.length > 0) {
          const statuses = await repos.keys.keyStatuses(tenantId, unsigned.map((p) => ({ deviceId: p.deviceId, spkiSha256: p.toSign!.spkiSha256 })));
          if (statuses.length !== unsigned.length) throw new Error('key checks: one answer per member expected');
          unsigned.forEach((p, i) => {
            try {
              assertKeyStatus(statuses[i]!);
            } catch (error) {
              settle(p, { error }); // nothing signed for it
            }
          });
          await Promise.all(unsigned.filter((p) => !p.settled).map(signMember));
        }
        inserted = together.filter((p) => !p.settled && p.signed);
        return inserted.length === 0
          ? []
          : repos.certificates.insertIssuedCertificates(
              inserted.map((p) => {
                const s = p.signed!;
                return {
                  certificate: {
                    tenantId,
                    deviceId: p.deviceId,
                    certPem: s.cert.certPem,
                    fingerprint: s.cert.fingerprint,
                    commonName: commonNameFor(tenantId, p.deviceId),
                    issuer: s.cert.issuer,
                    caId: s.cert.caId ?? null,
                    serialNumber: s.cert.serialHex,
                    keyType: s.cert.keyType,
                    spkiSha256: s.cert.spkiSha256,
                    notBefore: s.cert.notBefore,
                    notAfter: s.cert.notAfter,
                    now: s.at,
                  },
                  audit: {
                    actor: p.actor.id,
                    action: p.action,
                    targetType: 'certificate',
                    details: { device_id: p.deviceId, fingerprint: s.cert.fingerprint, serial_number: s.cert.serialHex, ...s.details },
                  },
                };
              }),
            );
      }, { genericPlans: true }); // the key check's plan made once per connection, not at every group (TenantWorkOptions)
    } catch {
      records = null; // rolled back: each member alone below, with its own outcome
    }
    inserted.forEach((p, i) => {
      const record = records?.[i];
      if (record) settle(p, { record });
    });
    for (const p of [...together, ...later]) if (!p.settled) await alone(p);
  }

  const add = tenantGroups<Pending>({ maxGroup: MAX_GROUP, inFlight: GROUPS_IN_FLIGHT, flush });

  return {
    store(actor, deviceId, cert, at, action, details) {
      return new Promise<CertificateRecord>((resolve, reject) =>
        add(actor.tenantId, { actor, deviceId, action, signed: { cert, at, details }, toSign: null, settled: false, resolve, reject }),
      );
    },
    signAndStore<S extends SignedMember>(actor: Actor, deviceId: string, spkiSha256: string, sign: () => Promise<S>, action: string) {
      let signed: S | null = null;
      const toSign = { spkiSha256, sign: async () => (signed = await sign()) };
      return new Promise<CertificateRecord>((resolve, reject) =>
        add(actor.tenantId, { actor, deviceId, action, signed: null, toSign, settled: false, resolve, reject }),
      ).then((record) => ({ record, signed: signed! }));
    },
  };
}
