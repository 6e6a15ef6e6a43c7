/**
 * The Device CA lifecycle (issue 19), operator only: list, show (with the migration progress),
 * create (a generated key), import ("bring your own CA"), activate, retire, revoke.
 * Every change is one transaction with its audit event; the CA directory is re-read after it
 * (and the other processes are told).
 */
import { randomBytes } from 'node:crypto';
import { SYSTEM_TENANT } from '../domain/alert.ts';
import { isPublishedCaStatus, type CaRecord } from '../domain/ca.ts';
import { AppError } from '../domain/errors.ts';
import { isValidTenantId } from '../domain/identifiers.ts';
import { plural } from '../domain/wording.ts';
import type { Actor, CaKeystore, CaRegistry, PreparedCa } from './ports.ts';
import { AlreadyExistsError, type CaProgress, type OperatorRepositories, type Storage } from './storage-ports.ts';
import { DAY_MS, type Clock } from '../domain/clock.ts';

export interface CaView {
  id: string;
  status: CaRecord['status'];
  /** `root`: signs intermediates and its CRL only; `issuing`: signs device certificates. */
  kind: CaRecord['kind'];
  /** The root that signed this intermediate; null: self-signed. */
  parent_id: string | null;
  tenant_id: string | null;
  subject: string;
  issuer_key_id: string;
  not_before: string;
  not_after: string;
  key: { kind: 'file' | 'pkcs11'; ref: string };
  crl_distribution_point: string;
  created_at: string;
  activated_at: string | null;
  retiring_at: string | null;
  retired_at: string | null;
  revoked_at: string | null;
  reason: string | null;
  /** Unrevoked, unexpired device certificates it signed (all tenants). */
  active_certificates: number;
}

/** A CA as a tenant sees it: public facts only (its certificate is public at /pki/ca/{id}.pem). */
export interface TenantCaView {
  id: string;
  subject: string;
  status: CaRecord['status'];
  /** null: the global scope; else this tenant's own CA. */
  tenant_id: string | null;
  not_before: string;
  not_after: string;
  /** The CA that signs this tenant's new certificates and renewals now. */
  signs_new_certificates: boolean;
  /** This tenant's unexpired ACTIVE certificates it signed. */
  active_certificates: number;
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export function caView(r: CaRecord, progress: CaProgress[]): CaView {
  return {
    id: r.id,
    status: r.status,
    kind: r.kind,
    parent_id: r.parentId,
    tenant_id: r.tenantId,
    subject: r.subject,
    issuer_key_id: r.issuerKeyId,
    not_before: r.notBefore.toISOString(),
    not_after: r.notAfter.toISOString(),
    key: r.keyRef.kind === 'file' ? { kind: 'file', ref: r.keyRef.path } : { kind: 'pkcs11', ref: r.keyRef.uri },
    crl_distribution_point: r.crlDistributionPoint,
    created_at: r.createdAt.toISOString(),
    activated_at: iso(r.activatedAt),
    retiring_at: iso(r.retiringAt),
    retired_at: iso(r.retiredAt),
    revoked_at: iso(r.revokedAt),
    reason: r.revocationReason,
    active_certificates: progress.reduce((n, p) => n + p.activeCertificates, 0),
  };
}

export const CA_KEY_TYPES = ['ec-p256', 'rsa-3072'] as const;
export type CaCreateInput = {
  key_type?: (typeof CA_KEY_TYPES)[number];
  tenant_id?: string | null;
  key_uri?: string | null;
  common_name?: string;
  /** `root`: a certfleet root (signs intermediates only); default `issuing`. */
  kind?: 'root' | 'issuing';
  /** An intermediate signed by this certfleet root (the root's scope is global or the new CA's tenant). */
  parent_id?: string | null;
};
export type CaImportInput = { cert_pem: string; key_pem?: string | null; key_uri?: string | null; tenant_id?: string | null };

export interface CaManagementDeps {
  storage: Storage;
  clock: Clock;
  keystore: CaKeystore;
  registry: CaRegistry;
  /** CRL distribution point of a new CA's certificates: <PUBLIC_BASE_URL>/pki/ca/{id}/crl. */
  crlUrlFor(id: string): string;
}

const notFound = (id: string) => new AppError('CA_NOT_FOUND', `no CA ${id}`);
const auditTenant = (r: Pick<CaRecord, 'tenantId'>) => r.tenantId ?? SYSTEM_TENANT;

export function createCaManagement(deps: CaManagementDeps) {
  const { storage, clock, keystore, registry } = deps;

  async function findOrThrow(repos: OperatorRepositories, id: string, lock = false): Promise<CaRecord> {
    const ca = await repos.cas.findCa(id, { lock });
    if (!ca) throw notFound(id);
    return ca;
  }

  /** A tenant scope must name a tenant certfleet knows (one with a registered device). */
  async function assertKnownTenant(tenantId: string | null | undefined): Promise<string | null> {
    if (tenantId === null || tenantId === undefined) return null;
    if (!isValidTenantId(tenantId)) throw new AppError('VALIDATION_FAILED', 'tenant_id must be 1 to 128 characters: letters, digits, and . _ : - (not first)');
    const page = await storage.asOperator((repos) => repos.devices.listDevices({ tenantId, limit: 1 }));
    if (page.devices.length === 0) throw new AppError('TENANT_NOT_FOUND', `tenant "${tenantId}" is unknown (it has no registered device): a CA scope must name an existing tenant`);
    return tenantId;
  }

  /** Stores a staged CA: the key file is written in the same transaction, after the insert (an insert refused leaves no file). */
  async function store(actor: Actor, id: string, tenantId: string | null, prepared: PreparedCa, action: string, hierarchy: { kind: CaRecord['kind']; parentId: string | null } = { kind: 'issuing', parentId: null }): Promise<CaView> {
    const now = clock.now();
    try {
      const record = await storage.asOperator(async (repos) => {
        if (await repos.cas.findCaByKeyId(prepared.issuerKeyId)) throw new AppError('CA_EXISTS', `a CA with this key (key id ${prepared.issuerKeyId}) is already a record`);
        if ((await repos.cas.listCas()).some((c) => c.issuerLabel === prepared.issuerLabel)) {
          throw new AppError('CA_EXISTS', `a CA with the CN "${prepared.issuerLabel}" is already a record: certfleet tells CAs' certificates apart by their issuer CN; give the new CA another CN`);
        }
        if (hierarchy.parentId) {
          // The root may have been revoked or retired meanwhile: it must still be in service when its intermediate is stored.
          const root = await repos.cas.findCa(hierarchy.parentId, { lock: true });
          if (root?.kind !== 'root' || root.status !== 'active') throw new AppError('CA_STATUS_CONFLICT', `root CA ${hierarchy.parentId} is no longer in service`);
        }
        const inserted = await repos.cas.insertCa({
          id,
          tenantId,
          // A root is in service at once (published, signs intermediates); it never signs a device certificate.
          status: hierarchy.kind === 'root' ? 'active' : 'staged',
          kind: hierarchy.kind,
          parentId: hierarchy.parentId,
          subject: prepared.subject,
          issuerLabel: prepared.issuerLabel,
          issuerKeyId: prepared.issuerKeyId,
          notBefore: prepared.notBefore,
          notAfter: prepared.notAfter,
          certPem: prepared.certPem,
          keyRef: prepared.keyRef,
          crlDistributionPoint: deps.crlUrlFor(id),
          createdAt: now,
          createdBy: actor.id,
        });
        await prepared.persist();
        await repos.audit.recordAudit({
          tenantId: auditTenant(inserted),
          actor: actor.id,
          action,
          targetType: 'ca',
          targetId: id,
          details: {
            tenant_id: tenantId,
            subject: inserted.subject,
            issuer_key_id: inserted.issuerKeyId,
            key_kind: inserted.keyRef.kind,
            not_after: inserted.notAfter.toISOString(),
            kind: inserted.kind,
            parent_id: inserted.parentId,
          },
          at: now,
        });
        return inserted;
      });
      await registry.changed();
      return caView(record, []);
    } catch (e) {
      if (e instanceof AlreadyExistsError) throw new AppError('CA_EXISTS', 'this CA (its key or its CN) is already a record');
      throw e;
    }
  }

  const newId = () => `ca_${randomBytes(8).toString('hex')}`;

  /** An intermediate left service (retired, revoked): its root's next CRL lists it (a rebuild is requested, as after a revocation). */
  async function rootCrlChanged(repos: OperatorRepositories, ca: CaRecord): Promise<void> {
    if (!ca.parentId) return;
    const root = await repos.cas.findCa(ca.parentId);
    if (root) await repos.crl.requestCrlRebuild(root.issuerLabel);
  }

  /** A root retires once none of its intermediates is published (staged, active, retiring), unless forced with a reason. */
  async function retireRoot(repos: OperatorRepositories, actor: Actor, ca: CaRecord, now: Date, input: { force?: boolean; reason?: string | null }) {
    if (ca.status !== 'active') throw new AppError('CA_STATUS_CONFLICT', `root CA ${ca.id} is ${ca.status}: only a root in service can be retired`);
    const live = (await repos.cas.childCas(ca.id)).filter((c) => isPublishedCaStatus(c.status));
    if (live.length > 0 && !input.force) {
      throw new AppError(
        'CA_HAS_ACTIVE_CERTIFICATES',
        `root CA ${ca.id} still signs ${plural(live.length, 'published intermediate')} (${live.map((c) => `${c.id} ${c.status}`).join(', ')}): retire ${live.length === 1 ? 'it' : 'them'} first, or retire the root with force and a reason (${live.length === 1 ? 'its' : 'their'} devices will be refused)`,
        undefined,
        { intermediates: live.map((c) => ({ id: c.id, status: c.status })) },
      );
    }
    const reason = input.reason?.trim() || null;
    const retired = await repos.cas.setCaStatus(ca.id, 'retired', ['active'], now, reason);
    if (!retired) throw new AppError('CA_STATUS_CONFLICT', `CA ${ca.id} changed meanwhile`);
    // Forced: its published intermediates leave service with it (without their root no chain verifies).
    for (const child of live) {
      if (await repos.cas.setCaStatus(child.id, 'retired', ['staged', 'active', 'retiring'], now, reason)) await rootCrlChanged(repos, child);
    }
    await repos.audit.recordAudit({
      tenantId: auditTenant(ca),
      actor: actor.id,
      action: live.length > 0 ? 'ca.retired_forced' : 'ca.retired',
      targetType: 'ca',
      targetId: ca.id,
      details: { tenant_id: ca.tenantId, kind: 'root', intermediates_retired: live.map((c) => c.id), reason },
      at: now,
    });
    return { ca: caView(retired, []) };
  }

  return {
    /**
     * The CAs a tenant may see (GET /api/v1/customer/cas, read-only): the issuing CAs of its scopes
     * (global or its own) that still hold an unexpired ACTIVE certificate of the tenant, plus the one
     * that signs its certificates now. The counts are read in the tenant's own unit of work (row-level
     * security: only its certificates); the CA records (an operator table) give only public facts, the
     * same a device reads from /pki/ca/{id}.pem, never the key reference or another tenant's CA.
     */
    async listForTenant(tenantId: string): Promise<TenantCaView[]> {
      const now = clock.now();
      const records = (await storage.asOperator((repos) => repos.cas.listCas())).filter((c) => c.kind === 'issuing' && (c.tenantId === null || c.tenantId === tenantId));
      const counts = await storage.asTenant(tenantId, (repos) => repos.certificates.activeCertificatesByCa(tenantId, records.map((c) => c.id), now));
      const own = records.find((c) => c.status === 'active' && c.tenantId === tenantId);
      const signing = own ?? records.find((c) => c.status === 'active' && c.tenantId === null);
      return records
        .filter((c) => c === signing || (counts[c.id] ?? 0) > 0)
        .map((c) => ({
          id: c.id,
          subject: c.subject,
          status: c.status,
          tenant_id: c.tenantId,
          not_before: c.notBefore.toISOString(),
          not_after: c.notAfter.toISOString(),
          signs_new_certificates: c === signing,
          active_certificates: counts[c.id] ?? 0,
        }));
    },

    async listCas(): Promise<CaView[]> {
      const now = clock.now();
      return storage.asOperator(async (repos) => {
        const records = await repos.cas.listCas();
        return Promise.all(records.map(async (r) => caView(r, await repos.cas.caProgress(r.id, now))));
      });
    },

    async showCa(id: string) {
      const now = clock.now();
      return storage.asOperator(async (repos) => {
        const record = await findOrThrow(repos, id);
        const progress = await repos.cas.caProgress(id, now);
        return {
          ca: caView(record, progress),
          cert_pem: record.certPem,
          key_loaded: registry.isLoaded(id),
          progress: progress.map((p) => ({ tenant_id: p.tenantId, active_certificates: p.activeCertificates })),
        };
      });
    },

    /**
     * A CA certfleet generates: a self-signed issuing CA (staged), a root (`kind` root: active at
     * once, signs only intermediates and its CRL), or an intermediate under a certfleet root
     * (`parent_id`: staged, pathLen 0, signed by the root's key).
     */
    async createCa(actor: Actor, input: CaCreateInput): Promise<CaView> {
      const tenantId = await assertKnownTenant(input.tenant_id);
      const kind = input.kind ?? 'issuing';
      const parentId = input.parent_id ?? null;
      if (kind === 'root' && parentId) throw new AppError('VALIDATION_FAILED', 'a root CA has no parent (certfleet keeps two levels: root, then intermediates)');
      let parentCrlUrl: string | null = null;
      if (parentId) {
        const root = await storage.asOperator((repos) => repos.cas.findCa(parentId));
        if (!root) throw notFound(parentId);
        if (root.kind !== 'root') throw new AppError('CA_STATUS_CONFLICT', `CA ${parentId} is not a root CA: only a root made with ca create --root signs intermediates`);
        if (root.status !== 'active') throw new AppError('CA_STATUS_CONFLICT', `root CA ${parentId} is ${root.status}: it signs nothing`);
        if (root.tenantId !== null && root.tenantId !== tenantId) throw new AppError('CA_STATUS_CONFLICT', `root CA ${parentId} belongs to tenant "${root.tenantId}": it signs only that tenant's intermediates`);
        if (root.notAfter.getTime() <= clock.now().getTime() + DAY_MS) throw new AppError('INVALID_CA_CERTIFICATE', `root CA ${parentId} expires at ${root.notAfter.toISOString()}: an intermediate under it would be useless`);
        parentCrlUrl = root.crlDistributionPoint;
      }
      const id = newId();
      const stamp = clock.now().toISOString().slice(0, 10);
      const label = kind === 'root' ? 'Root CA' : 'Device CA';
      const commonName = input.common_name ?? `certfleet ${label} ${tenantId ? `${tenantId} ` : ''}${stamp} ${id.slice(3, 11)}`;
      if (parentId && !registry.isLoaded(parentId)) await registry.changed(); // a root another process just created: load its key first
      const prepared = await keystore.generate({ id, keyType: input.key_type ?? 'ec-p256', keyUri: input.key_uri ?? null, commonName, now: clock.now(), kind, parentId, parentCrlUrl });
      return store(actor, id, tenantId, prepared, kind === 'root' ? 'ca.root_created' : 'ca.created', { kind, parentId });
    },

    async importCa(actor: Actor, input: CaImportInput): Promise<CaView> {
      const tenantId = await assertKnownTenant(input.tenant_id);
      if (/PRIVATE KEY/.test(input.cert_pem)) throw new AppError('VALIDATION_FAILED', 'cert_pem holds a private key: give the key as key_pem (or key_uri), the certificate as cert_pem');
      const id = newId();
      const prepared = await keystore.importCa({ id, certPem: input.cert_pem, keyPem: input.key_pem ?? null, keyUri: input.key_uri ?? null, now: clock.now() });
      return store(actor, id, tenantId, prepared, 'ca.imported');
    },

    /** staged -> active; the scope's previous active CA becomes retiring, in the same transaction. */
    async activateCa(actor: Actor, id: string) {
      const now = clock.now();
      if (!registry.isLoaded(id)) {
        await registry.changed(); // a CA another process just created: re-read (and load its key) first
      }
      const result = await storage.asOperator(async (repos) => {
        const ca = await findOrThrow(repos, id, true);
        if (ca.kind === 'root') throw new AppError('CA_STATUS_CONFLICT', `CA ${id} is a root CA: it never signs device certificates; create an intermediate under it (ca create --parent ${id}) and activate that`);
        if (ca.status !== 'staged') throw new AppError('CA_STATUS_CONFLICT', `CA ${id} is ${ca.status}: only a staged CA can be activated`);
        if (ca.parentId) {
          const root = await repos.cas.findCa(ca.parentId, { lock: true });
          if (root?.status !== 'active') throw new AppError('CA_STATUS_CONFLICT', `the root of CA ${id} (${ca.parentId}) is ${root?.status ?? 'gone'}: its intermediate cannot sign`);
        }
        if (ca.notAfter <= now) throw new AppError('INVALID_CA_CERTIFICATE', `CA ${id} expired at ${ca.notAfter.toISOString()}`);
        if (!registry.isLoaded(id)) throw new AppError('CA_KEY_UNAVAILABLE', `the key of CA ${id} cannot be used by this server (see its log): it cannot sign, so it is not activated`);
        const previous = await repos.cas.lockActiveCa(ca.tenantId);
        if (previous) await repos.cas.setCaStatus(previous.id, 'retiring', ['active'], now);
        let activated: CaRecord | null;
        try {
          activated = await repos.cas.setCaStatus(id, 'active', ['staged'], now);
        } catch (e) {
          if (e instanceof AlreadyExistsError) throw new AppError('CA_ACTIVE_EXISTS', 'another CA of this scope became active meanwhile');
          throw e;
        }
        if (!activated) throw new AppError('CA_STATUS_CONFLICT', `CA ${id} is no longer staged`);
        await repos.audit.recordAudit({
          tenantId: auditTenant(ca),
          actor: actor.id,
          action: 'ca.activated',
          targetType: 'ca',
          targetId: id,
          details: { tenant_id: ca.tenantId, previous: previous?.id ?? null },
          at: now,
        });
        return { ca: caView(activated, []), previous: previous ? previous.id : null };
      });
      await registry.changed();
      return result;
    },

    /** staged|retiring -> retired; refused while unexpired, unrevoked certificates remain unless forced with a reason. */
    async retireCa(actor: Actor, id: string, input: { force?: boolean; reason?: string | null }) {
      const now = clock.now();
      if (input.force && !input.reason?.trim()) throw new AppError('VALIDATION_FAILED', 'force needs a reason (it is audited)');
      const result = await storage.asOperator(async (repos) => {
        const ca = await findOrThrow(repos, id, true);
        if (ca.kind === 'root') return retireRoot(repos, actor, ca, now, input);
        if (ca.status === 'active') throw new AppError('CA_STATUS_CONFLICT', `CA ${id} is active: activate its successor first (it then becomes retiring)`);
        if (ca.status !== 'staged' && ca.status !== 'retiring') throw new AppError('CA_STATUS_CONFLICT', `CA ${id} is ${ca.status}: only a staged or retiring CA can be retired`);
        const progress = await repos.cas.caProgress(id, now);
        const remaining = progress.reduce((n, p) => n + p.activeCertificates, 0);
        if (remaining > 0 && !input.force) {
          throw new AppError(
            'CA_HAS_ACTIVE_CERTIFICATES',
            `CA ${id} still has ${plural(remaining, 'unexpired, unrevoked certificate')}: rotate ${remaining === 1 ? 'it' : 'them'} first (certfleet rotate-expiring --issuer ${id}), or retire with force and a reason (${remaining === 1 ? 'it' : 'they'} will be refused by the brokers)`,
            undefined,
            { active_certificates: remaining, progress: progress.map((p) => ({ tenant_id: p.tenantId, active_certificates: p.activeCertificates })) },
          );
        }
        const retired = await repos.cas.setCaStatus(id, 'retired', ['staged', 'retiring'], now, remaining > 0 ? input.reason!.trim() : (input.reason?.trim() || null));
        if (!retired) throw new AppError('CA_STATUS_CONFLICT', `CA ${id} changed meanwhile`);
        await repos.audit.recordAudit({
          tenantId: auditTenant(ca),
          actor: actor.id,
          action: remaining > 0 ? 'ca.retired_forced' : 'ca.retired',
          targetType: 'ca',
          targetId: id,
          details: { tenant_id: ca.tenantId, active_certificates: remaining, reason: input.reason ?? null },
          at: now,
        });
        await rootCrlChanged(repos, ca);
        return { ca: caView(retired, progress) };
      });
      await registry.changed();
      return result;
    },

    /** A compromised CA: it signs nothing from now on and is no longer published (brokers stop trusting it). */
    async revokeCa(actor: Actor, id: string, reason: string | undefined) {
      if (reason !== 'cACompromise') throw new AppError('REVOCATION_REASON_NOT_ALLOWED', 'a CA is revoked with reason cACompromise (to end a CA without compromise, retire it)');
      const now = clock.now();
      const result = await storage.asOperator(async (repos) => {
        const ca = await findOrThrow(repos, id, true);
        if (ca.status === 'revoked') throw new AppError('CA_STATUS_CONFLICT', `CA ${id} is already revoked`);
        const progress = await repos.cas.caProgress(id, now);
        const revoked = await repos.cas.setCaStatus(id, 'revoked', ['staged', 'active', 'retiring', 'retired'], now, reason);
        if (!revoked) throw new AppError('CA_STATUS_CONFLICT', `CA ${id} changed meanwhile`);
        // A compromised root takes its intermediates with it (nothing it signed can be trusted); an intermediate goes on its root's CRL.
        const cascaded: string[] = [];
        if (ca.kind === 'root') {
          for (const child of await repos.cas.childCas(id)) {
            if (child.status !== 'revoked' && (await repos.cas.setCaStatus(child.id, 'revoked', ['staged', 'active', 'retiring', 'retired'], now, reason))) cascaded.push(child.id);
          }
        }
        await rootCrlChanged(repos, ca);
        await repos.audit.recordAudit({
          tenantId: auditTenant(ca),
          actor: actor.id,
          action: 'ca.revoked',
          targetType: 'ca',
          targetId: id,
          details: {
            tenant_id: ca.tenantId,
            reason,
            previous_status: ca.status,
            active_certificates: progress.reduce((n, p) => n + p.activeCertificates, 0),
            ...(cascaded.length ? { intermediates_revoked: cascaded } : {}),
          },
          at: now,
        });
        return { ca: caView(revoked, progress), was: ca.status, ...(ca.kind === 'root' ? { intermediates_revoked: cascaded } : {}) };
      });
      await registry.changed();
      return result;
    },
  };
}

export type CaManagement = ReturnType<typeof createCaManagement>;
