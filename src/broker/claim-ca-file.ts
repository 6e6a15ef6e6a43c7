/**
 * The provisioning listener's trusted CAs (broker-config --provisioning-port, BROKER_CLAIM_CA_PATH):
 * the tenants' claim (manufacturer) CAs and nothing else, so that only a claim certificate gets
 * through its TLS handshake (a device certificate of certfleet's Device CA does not).
 *
 * It is a hashed certificate directory (Mosquitto `capath`: one `<subject hash>.<n>` PEM file per
 * CA), not a `cafile`, because Mosquitto 2.0.11 does not re-read a listener's `cafile` on reload
 * unless that listener also has a `crlfile` (measured in test/broker-trust-reload.test.ts: a CA
 * appended to the cafile stays unknown after SIGHUP; the device listener, with its crlfile, does
 * pick a new CA up on SIGHUP), while OpenSSL looks a `capath`
 * up at each handshake: a claim CA added is trusted at the next connection, without a reload or a
 * restart. A CA removed from the directory stays trusted by a running broker once OpenSSL has
 * loaded it (until the broker restarts); certfleet itself refuses its claims (CLAIM_CA_UNKNOWN)
 * from the moment it is deleted. An empty directory is fine: the listener then admits no one.
 */
import { X509Certificate, createHash } from 'node:crypto';
import { mkdir, readFile, readdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { subjectHash } from '../pki/subject-hash.ts';
import { writeFileAtomic } from '../support/atomic-file.ts';

const HASHED_NAME = /^[0-9a-f]{8}\.\d+$/;

/** The directory's files for these CAs: `<subject hash>.<n>` → PEM, every distinct CA once, in a stable order. */
export function claimCaDirectoryFiles(pems: readonly string[]): Map<string, string> {
  const byFingerprint = new Map<string, X509Certificate>();
  for (const pem of pems) {
    const cert = new X509Certificate(pem);
    byFingerprint.set(createHash('sha256').update(cert.raw).digest('hex'), cert);
  }
  const files = new Map<string, string>();
  const used = new Map<string, number>();
  for (const [, cert] of [...byFingerprint.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    const hash = subjectHash(cert.raw);
    const n = used.get(hash) ?? 0;
    used.set(hash, n + 1);
    files.set(`${hash}.${n}`, `${cert.toString().trim()}\n`);
  }
  return files;
}

/** Makes `dir` hold exactly these CAs; returns whether anything changed. Files are replaced atomically. */
export async function writeClaimCaDirectory(dir: string, pems: readonly string[]): Promise<{ changed: boolean; claimCas: number }> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const wanted = claimCaDirectoryFiles(pems);
  let changed = false;
  for (const name of await readdir(dir)) {
    if (HASHED_NAME.test(name) && !wanted.has(name)) {
      await unlink(path.join(dir, name));
      changed = true;
    }
  }
  for (const [name, pem] of wanted) {
    const current = await readFile(path.join(dir, name), 'utf8').catch(() => null);
    if (current === pem) continue;
    await writeFileAtomic(path.join(dir, name), pem, 0o644);
    changed = true;
  }
  return { changed, claimCas: wanted.size };
}

export interface ClaimCaFileSync {
  /** Re-reads the claim CAs and makes the directory hold exactly them. One at a time. */
  sync(): Promise<void>;
  idle(): Promise<void>;
}

/** Keeps BROKER_CLAIM_CA_PATH equal to the tenants' claim CAs (after each change here, and periodically for other replicas'). */
export function createClaimCaFileSync(deps: {
  path: string;
  claimCaPems: () => Promise<string[]>;
  logger: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}): ClaimCaFileSync {
  let queue: Promise<unknown> = Promise.resolve();
  async function once() {
    const result = await writeClaimCaDirectory(deps.path, await deps.claimCaPems());
    if (result.changed) deps.logger.info({ path: deps.path, claim_cas: result.claimCas }, 'provisioning listener capath rewritten (claim CAs changed)');
  }
  return {
    sync() {
      const next = queue.then(once, once);
      queue = next.catch((e: unknown) => deps.logger.warn({ err: e, path: deps.path }, 'could not rewrite the provisioning listener capath'));
      return next;
    },
    idle: () => queue.then(() => undefined),
  };
}
