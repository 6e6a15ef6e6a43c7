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
 */
import { mkdir, readFile, unlink } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { BrokerReloader } from '../broker/broker-reloader.ts';
import { writeFileAtomic } from '../support/atomic-file.ts';
import type { Logger } from '../support/logger.ts';
import { unlessMissing } from '../support/missing-file.ts';

export interface TrustMember {
  issuerKeyId: string;
  certPem: string;
}

export interface BrokerTrustFilesDeps {
  crlPath: string;
  /** BROKER_CA_PATH: the broker's cafile this process keeps; null: none kept (broker-config wrote it once). */
  caPath: string | null;
  reloader: BrokerReloader;
  logger: Logger;
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
  const perCaDir = `${crlPath}.d`;
  let members: TrustMember[] = [];
  let single = true;
  let crlFileHolds: string[] = [];
  let caFileHolds: string[] | null = null; // null: not written by this process yet
  let crlFileHash: string | null = null;
  let caFileHash: string | null = null;
  let queue: Promise<unknown> = Promise.resolve();

  const perCaPath = (id: string) => path.join(perCaDir, `${id}.pem`);
  const serial = <T>(work: () => Promise<T>): Promise<T> => {
    const next = queue.then(work, work);
    queue = next.catch(() => undefined);
    return next;
  };

  const reloadBroker = async () => {
    if (reloader.configured) await reloader.reload();
  };

  /** Writes the cafile with `ids` (in member order) when it differs; reloads the broker. */
  async function writeCaFile(ids: string[]) {
    if (!caPath) {
      caFileHolds = ids;
      return;
    }
    const pem = members
      .filter((m) => ids.includes(m.issuerKeyId))
      .map((m) => m.certPem.trimEnd() + '\n')
      .join('');
    const hash = sha(pem);
    if (hash === caFileHash && caFileHolds !== null) return;
    if (!pem) {
      // An empty cafile makes Mosquitto refuse to start; keep the last one (the crlfile still lists its CRLs).
      logger.warn({ path: caPath }, 'no CA left to trust: the broker cafile is kept as it is');
      return;
    }
    const current = await unlessMissing(readFile(caPath, 'utf8'));
    if (current !== pem) {
      await mkdir(path.dirname(caPath), { recursive: true });
      await writeFileAtomic(caPath, pem, 0o644);
      logger.info({ event: 'broker_cafile_written', path: caPath, cas: ids }, 'broker cafile rewritten');
      await reloadBroker();
    }
    caFileHash = hash;
    caFileHolds = ids;
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
      }),
    inCaFile: () => [...(caFileHolds ?? [])],
    inCrlFile: () => [...crlFileHolds],
    idle: () => queue.then(() => undefined),
  };
}
