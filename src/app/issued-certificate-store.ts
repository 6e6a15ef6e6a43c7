import type { CertificateRecord } from '../domain/certificate.ts';
import { commonNameFor } from '../domain/identifiers.ts';
import type { AppDeps } from './deps.ts';
import type { Actor, IssuedCertificate } from './ports.ts';
import { storeCertificate } from './sign-device-certificate.ts';
import { tenantGroups } from '../support/tenant-groups.ts';

/** At most this many certificates in one group (one statement's arrays). */
export const MAX_GROUP = 256;
/**
 * Groups of one tenant in flight at once: the next group's round trips overlap the previous one's
 * commit (its WAL flush). Their device rows are locked in key order (migration 024's trigger), so
 * two groups touching one device wait for each other, never deadlock.
 */
export const GROUPS_IN_FLIGHT = 2;

interface Pending {
  actor: Actor;
  deviceId: string;
  cert: IssuedCertificate & { spkiSha256: string };
  at: Date;
  action: string;
  details: Record<string, unknown>;
  resolve(record: CertificateRecord): void;
  reject(error: unknown): void;
}

export interface IssuedCertificateStore {
  /** Stores a signed certificate with its audit event (exactly one), as storeCertificate does in its own transaction. */
  store(actor: Actor, deviceId: string, cert: IssuedCertificate & { spkiSha256: string }, at: Date, action: string, details: Record<string, unknown>): Promise<CertificateRecord>;
}

/**
 * Group commit of issued certificates. Each tenant has at most GROUPS_IN_FLIGHT storing
 * transactions in flight; the certificates signed meanwhile wait and then go together, whatever
 * is queued (up to MAX_GROUP), in the next one: one transaction, one statement inserting every certificate and its
 * audit event, the same key checks as storeCertificate, the device-summary trigger run once. No
 * timer: an idle tenant's certificate is stored at once, alone. Under load the group grows with
 * the commit's latency, so the round trips and the commit's flush are shared.
 *
 * A member never fails or loses the others: a member whose key checks fail is skipped by the
 * statement and stored alone (raising KEY_COMPROMISED / KEY_IN_USE, or stored when the tenant
 * allows shared keys); when the group's statement fails (an unknown device, a duplicate, a lost
 * connection), nothing of it was stored and every member is stored alone, each with its own
 * outcome. Tenant isolation is the tenant transaction's (row-level security), as for one.
 */
export function createIssuedCertificateStore({ storage }: Pick<AppDeps, 'storage'>): IssuedCertificateStore {
  const alone = async (p: Pending) => {
    try {
      p.resolve(await storage.asTenant(p.actor.tenantId, (repos) => storeCertificate(repos, p.actor, p.deviceId, p.cert, p.at, p.action, p.details)));
    } catch (error) {
      p.reject(error);
    }
  };

  async function flush(tenantId: string, group: Pending[]): Promise<void> {
    // Two members with one key for different devices: the statement would not see the first when
    // checking the second. The later ones go alone, after the group.
    const holder = new Map<string, string>();
    const together: Pending[] = [];
    const later: Pending[] = [];
    for (const p of group) {
      const device = holder.get(p.cert.spkiSha256);
      if (device !== undefined && device !== p.deviceId) later.push(p);
      else {
        holder.set(p.cert.spkiSha256, p.deviceId);
        together.push(p);
      }
    }
    let records: (CertificateRecord | null)[] | null = null;
    try {
      records = await storage.asTenant(tenantId, (repos) =>
        repos.certificates.insertIssuedCertificates(
          together.map((p) => ({
            certificate: {
              tenantId,
              deviceId: p.deviceId,
              certPem: p.cert.certPem,
              fingerprint: p.cert.fingerprint,
              commonName: commonNameFor(tenantId, p.deviceId),
              issuer: p.cert.issuer,
              caId: p.cert.caId ?? null,
              serialNumber: p.cert.serialHex,
              keyType: p.cert.keyType,
              spkiSha256: p.cert.spkiSha256,
              notBefore: p.cert.notBefore,
              notAfter: p.cert.notAfter,
              now: p.at,
            },
            audit: {
              actor: p.actor.id,
              action: p.action,
              targetType: 'certificate',
              details: { device_id: p.deviceId, fingerprint: p.cert.fingerprint, serial_number: p.cert.serialHex, ...p.details },
            },
          })),
        ),
      );
    } catch {
      records = null; // rolled back: each member alone below, with its own outcome
    }
    const retry: Pending[] = [];
    together.forEach((p, i) => {
      const record = records?.[i];
      if (record) p.resolve(record);
      else retry.push(p);
    });
    for (const p of [...retry, ...later]) await alone(p);
  }

  const add = tenantGroups<Pending>({ maxGroup: MAX_GROUP, inFlight: GROUPS_IN_FLIGHT, flush });

  return {
    store(actor, deviceId, cert, at, action, details) {
      return new Promise<CertificateRecord>((resolve, reject) => add(actor.tenantId, { actor, deviceId, cert, at, action, details, resolve, reject }));
    },
  };
}
