/**
 * The broker's two trust files when several CAs are published: its `crlfile` (CRL_OUTPUT_PATH:
 * every trusted CA's CRL, file variant, PEM, concatenated) and its `cafile` (BROKER_CA_PATH:
 * every trusted CA's certificate), kept in the one order Mosquitto tolerates.
 *
 * Measured on Mosquitto 2.0.11: a CA in `cafile` whose CRL is not in `crlfile` gets ALL its
 * certificates refused. So:
 * - a CA enters the cafile only once its CRL is in the crlfile the broker has reloaded
 *   (a staged CA: first CRL → crlfile + reload → cafile + reload);
 * - a CA leaves the cafile first (rewrite + reload), and its CRL leaves the crlfile after.
 *
 * With ONE CA the CA's pipeline writes CRL_OUTPUT_PATH itself (crl-file-sync.ts, unchanged);
 * with several, each CA's pipeline writes its own file `<CRL_OUTPUT_PATH>.d/<key id>.pem`
 * (crl-file-sync.ts: atomic, never older, verified) and its "reloader" is `assemble()` here,
 * which concatenates the per-CA files into CRL_OUTPUT_PATH atomically and reloads the broker.
 * Everything here runs one at a time (one queue), so the two files are never written at once.
 *
 * Tenant-scoped CAs (issue 19): the broker derives a device's topics from its certificate's CN, so
 * a tenant's own CA (whose key the tenant may hold) could sign a CN naming another tenant's device.
 * - `tenantCas: 'bind'` (the certfleet_acl plugin mode): the CA scope map `<cafile>.scopes`
 *   (src/broker/ca-scopes.ts) lists every CA of the cafile with its scope, and is written before
 *   the cafile each time, so the plugin never sees a CA in the cafile without its scope (it
 *   denies such a CA's certificates anyway: fail closed).
 * - `tenantCas: 'exclude'` (acl_file mode, RabbitMQ: nothing there can tell which CA signed a
 *   certificate): tenant-scoped CAs are left out of the cafile (their CRLs may stay in the
 *   crlfile, unused), so this broker refuses their devices; logged once per CA.
 *
 * Mosquitto's CRL hash folder (issue 22, src/broker/crl-hash-links.ts): when `hashDir` is given
 * (`<CRL_OUTPUT_PATH>.hash`, made by `broker-config`), the broker's `crlfile` is a placeholder and
 * its `capath` that folder, with one `<subject hash>.r0` link to CRL_OUTPUT_PATH per CA. The links
 * follow the same order as the files: every member's (and every CA still in the cafile's) link is
 * in place before each broker reload and before the cafile is written, so a CA never enters the
 * cafile without its link; a leaving CA's link goes after it left the cafile. A missing link only
 * refuses that CA's devices (fail closed).
 */
import { mkdir, readFile, unlink } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { BrokerReloader } from '../broker/broker-reloader.ts';
import { writeFileAtomic } from '../support/atomic-file.ts';
import type { Logger } from '../support/logger.ts';
import { unlessMissing } from '../support/missing-file.ts';
import { caScopesPathFor, renderCaScopes } from '../broker/ca-scopes.ts';
import { syncCrlHashLinks } from '../broker/crl-hash-links.ts';
import { subjectHash } from '../pki/subject-hash.ts';
import { X509Certificate } from 'node:crypto';

export interface TrustMember {
  issuerKeyId: string;
  certPem: string;
  /** The CA's scope: null (or absent) global, else the tenant whose devices it signs. */
  tenantId?: string | null;
}

/** Whether the broker can bind a certificate's CN to its CA's scope (see above). */
export type TenantCaMode = 'bind' | 'exclude';

export interface BrokerTrustFilesDeps {
  crlPath: string;
  /** BROKER_CA_PATH: the broker's cafile this process keeps; null: none kept (broker-config wrote it once). */
  caPath: string | null;
  reloader: BrokerReloader;
  logger: Logger;
  /** Default 'bind': the scope map is written beside the cafile. */
  tenantCas?: TenantCaMode;
  /** Mosquitto's CRL hash folder (`capath`, `<crlPath>.hash`), kept here; null or absent: the single `crlfile` layout. */
  hashDir?: string | null;
}

export interface BrokerTrustFiles {
  /** Where a CA's pipeline writes its CRL: CRL_OUTPUT_PATH itself while it is the only CA. */
  crlPathFor(issuerKeyId: string): string;
  /** One CA's pipeline writes CRL_OUTPUT_PATH directly (one CA), or its own file assembled here. */
  readonly single: boolean;
  /** The reloader a CA's own file sync calls after writing its file (several CAs): assembles and reloads. */
  readonly assembler: BrokerReloader;
  /** A new trust set, in order: CAs that left leave the cafile, then the crlfile; new ones follow their first CRL. */
  setMembers(members: TrustMember[]): Promise<void>;
  /** Key ids of the CAs in the cafile now (as last written). */
  inCaFile(): string[];
  /** Key ids whose CRL is in the crlfile now (as last assembled; single mode: the one CA once its file exists). */
  inCrlFile(): string[];
  idle(): Promise<void>;
}

const sha = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

export function createBrokerTrustFiles(deps: BrokerTrustFilesDeps): BrokerTrustFiles {
  const { crlPath, caPath, reloader, logger } = deps;
  const tenantCas = deps.tenantCas ?? 'bind';
  const scopesPath = caPath ? caScopesPathFor(caPath) : null;
  const excludedLogged = new Set<string>();
  const perCaDir = `${crlPath}.d`;
  let members: TrustMember[] = [];
  let single = true;
  let crlFileHolds: string[] = [];
  let caFileHolds: string[] | null = null; // null: not written by this process yet
  let crlFileHash: string | null = null;
  let caFileHash: string | null = null;
  let queue: Promise<unknown> = Promise.resolve();
  const hashDir = deps.hashDir ?? null;
  const hashById = new Map<string, string>();

  const perCaPath = (id: string) => path.join(perCaDir, `${id}.pem`);
  const serial = <T>(work: () => Promise<T>): Promise<T> => {
    const next = queue.then(work, work);
    queue = next.catch(() => undefined);
    return next;
  };

  /**
   * Hash folder: one link per member and per CA still in the cafile (a CA leaving keeps its link
   * until it left the cafile); every other link removed. Before each reload and cafile write.
   */
  async function syncLinks() {
    if (!hashDir) return;
    for (const m of members) {
      if (!hashById.has(m.issuerKeyId)) hashById.set(m.issuerKeyId, subjectHash(new X509Certificate(m.certPem).raw));
    }
    const ids = new Set([...members.map((m) => m.issuerKeyId), ...(caFileHolds ?? [])]);
    const hashes = new Set([...ids].map((id) => hashById.get(id)).filter((h): h is string => h !== undefined));
    if (hashes.size === 0) return; // no CA known yet: the links broker-config made stay
    if (await syncCrlHashLinks(hashDir, crlPath, hashes)) {
      logger.info({ event: 'broker_crl_hash_links', dir: hashDir, hashes: [...hashes] }, 'broker CRL hash folder updated');
    }
  }

  const reloadBroker = async () => {
    // A link that cannot be made does not hold back the reload: the links in place point at the
    // new CRL file too. The failure is raised after it (a CRL file sync retries the reload, and so the links).
    const linkError = await syncLinks().then(
      () => null,
      (error: unknown) => (error instanceof Error ? error : new Error(String(error))),
    );
    if (linkError) logger.error({ event: 'broker_crl_hash_links_failed', dir: hashDir, err: linkError.message }, 'could not update the broker CRL hash folder');
    if (reloader.configured) await reloader.reload();
    if (linkError) throw linkError;
  };

  /** The scope map of the cafile's CAs, written (atomically) when it differs from the file; true when written. */
  async function writeScopes(inCafile: TrustMember[]): Promise<boolean> {
    if (!scopesPath || tenantCas !== 'bind') return false;
    const text = renderCaScopes(inCafile.map((m) => ({ certPem: m.certPem, tenantId: m.tenantId ?? null })));
    if ((await unlessMissing(readFile(scopesPath, 'utf8'))) === text) return false;
    await mkdir(path.dirname(scopesPath), { recursive: true });
    await writeFileAtomic(scopesPath, text, 0o644);
    logger.info({ event: 'broker_ca_scopes_written', path: scopesPath, cas: inCafile.map((m) => `${m.issuerKeyId}:${m.tenantId ?? '*'}`) }, 'broker CA scope map rewritten');
    return true;
  }

  /** Writes the cafile with `ids` (in member order) when it differs, its scope map first; reloads the broker. */
  async function writeCaFile(ids: string[]) {
    if (!caPath) {
      caFileHolds = ids;
      return;
    }
    const inCafile = eligible(members.filter((m) => ids.includes(m.issuerKeyId)));
    ids = inCafile.map((m) => m.issuerKeyId);
    const pem = inCafile.map((m) => m.certPem.trimEnd() + '\n').join('');
    const hash = sha(pem);
    if (hash === caFileHash && caFileHolds !== null) return;
    if (!pem) {
      // An empty cafile makes Mosquitto refuse to start; keep the last one (the crlfile still lists its CRLs).
      logger.warn({ path: caPath }, 'no CA left to trust: the broker cafile is kept as it is');
      return;
    }
    // The links first (hash folder layout): a CA never enters the cafile without its CRL link.
    await syncLinks();
    // The map first: the broker never reloads a cafile holding a CA whose scope it does not know.
    const scopesChanged = await writeScopes(inCafile);
    const current = await unlessMissing(readFile(caPath, 'utf8'));
    if (current !== pem) {
      await mkdir(path.dirname(caPath), { recursive: true });
      await writeFileAtomic(caPath, pem, 0o644);
      logger.info({ event: 'broker_cafile_written', path: caPath, cas: ids }, 'broker cafile rewritten');
      await reloadBroker();
    } else if (scopesChanged) {
      await reloadBroker();
    }
    caFileHash = hash;
    caFileHolds = ids;
  }

  /** 'exclude': the tenant-scoped CAs are not this broker's to trust (logged once each). */
  function eligible(next: TrustMember[]): TrustMember[] {
    if (tenantCas === 'bind') return next;
    for (const m of next) {
      if (m.tenantId && !excludedLogged.has(m.issuerKeyId)) {
        excludedLogged.add(m.issuerKeyId);
        logger.warn(
          { event: 'broker_tenant_ca_excluded', issuer_key_id: m.issuerKeyId, tenant_id: m.tenantId },
          "a tenant-scoped CA is left out of the broker's trust files: this broker mode (acl_file, RabbitMQ) cannot bind a certificate's CN to its CA's tenant, so that CA's devices are refused here (use the certfleet_acl plugin: broker-config --acl-plugin)",
        );
      }
    }
    return next.filter((m) => !m.tenantId);
  }

  /** Several CAs: CRL_OUTPUT_PATH := the per-CA files of the members that have one, in member order. */
  async function assembleCrlFile() {
    const parts: Buffer[] = [];
    const holds: string[] = [];
    for (const m of members) {
      const pem = await unlessMissing(readFile(perCaPath(m.issuerKeyId)));
      if (!pem) continue;
      parts.push(pem);
      holds.push(m.issuerKeyId);
    }
    if (parts.length === 0) return; // nothing to publish yet: the previous file stays
    const body = Buffer.concat(parts);
    const hash = sha(body);
    if (hash !== crlFileHash) {
      const current = await unlessMissing(readFile(crlPath));
      if (!current || sha(current) !== hash) {
        await mkdir(path.dirname(crlPath), { recursive: true });
        await writeFileAtomic(crlPath, body, 0o644);
        await reloadBroker();
      }
      crlFileHash = hash;
    }
    crlFileHolds = holds;
  }

  /** After a CRL reached the crlfile: CAs whose CRL the broker has now enter the cafile. */
  async function admitCas() {
    const current = caFileHolds ?? [];
    const ids = members.map((m) => m.issuerKeyId).filter((id) => current.includes(id) || crlFileHolds.includes(id));
    await writeCaFile(ids);
  }

  const assembler: BrokerReloader = {
    // One CA: exactly the broker's reloader (its pipeline behaves as it always did).
    get configured() {
      return single ? reloader.configured : true;
    },
    get description() {
      return single ? reloader.description : `assemble ${crlPath} from ${perCaDir}, then ${reloader.description}`;
    },
    reload: () =>
      serial(async () => {
        if (single) {
          await reloadBroker();
          if (members.length === 1) {
            crlFileHolds = [members[0]!.issuerKeyId];
            await admitCas();
          }
          return;
        }
        await assembleCrlFile();
        await admitCas();
      }),
  };

  return {
    crlPathFor: (id) => (single ? crlPath : perCaPath(id)),
    get single() {
      return single;
    },
    assembler,
    setMembers: (next) =>
      serial(async () => {
        const nextIds = next.map((m) => m.issuerKeyId);
        const leaving = members.filter((m) => !nextIds.includes(m.issuerKeyId)).map((m) => m.issuerKeyId);
        // 1. Leaving CAs leave the cafile first (the broker refuses their certificates from here on).
        if (leaving.length && caFileHolds !== null) {
          const keep = caFileHolds.filter((id) => !leaving.includes(id));
          const before = members;
          members = before.filter((m) => keep.includes(m.issuerKeyId));
          await writeCaFile(keep);
          members = before;
        }
        members = next;
        const wasSingle = single;
        single = next.length <= 1;
        if (!single) {
          // 2. The crlfile follows: the members' CRLs (a new CA's once its pipeline wrote it).
          await mkdir(perCaDir, { recursive: true, mode: 0o755 });
          if (wasSingle && next.length > 1) {
            // The one CA's CRL was CRL_OUTPUT_PATH itself: it becomes that CA's own file (its pipeline then keeps it).
            const sole = await unlessMissing(readFile(crlPath));
            const known = crlFileHolds.length === 1 ? crlFileHolds[0] : null;
            if (sole && known && nextIds.includes(known) && !(await unlessMissing(readFile(perCaPath(known))))) {
              await writeFileAtomic(perCaPath(known), sole, 0o644);
            }
          }
          await assembleCrlFile();
          await admitCas();
        } else if (next.length === 1) {
          const id = next[0]!.issuerKeyId;
          const own = await unlessMissing(readFile(perCaPath(id)));
          if (!wasSingle && own) {
            // Back to one CA: CRL_OUTPUT_PATH holds its CRL alone before its pipeline writes it directly.
            await writeFileAtomic(crlPath, own, 0o644);
            await reloadBroker();
          }
          crlFileHolds = own || (await unlessMissing(readFile(crlPath))) ? [id] : [];
          await admitCas();
        }
        for (const id of leaving) await unlink(perCaPath(id)).catch(() => undefined);
        // The leaving CAs' links last (they left the cafile above).
        await syncLinks();
      }),
    inCaFile: () => [...(caFileHolds ?? [])],
    inCrlFile: () => [...crlFileHolds],
    idle: () => queue.then(() => undefined),
  };
}
