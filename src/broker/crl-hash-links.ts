/**
 * Mosquitto's CRL hash folder (issue 22, docs/mosquitto-reload-cost.md): the device listener's
 * `crlfile` is a tiny placeholder CRL (another issuer, no entries) and its `capath` is this folder,
 * `<crlfile>.hash/` beside the real CRL file (CRL_OUTPUT_PATH, or a broker agent's `--crl-file`).
 * It holds one `<OpenSSL subject hash of a CA>.r0` per trusted CA, each a relative symbolic link
 * to the real CRL file (`../device-crl.pem`), so OpenSSL's hashed-directory lookup loads the CRLs
 * once, lazily, at the first handshake after a reload, instead of Mosquitto loading the whole file
 * twice per SIGHUP.
 *
 * Why links to the one file, not a copy per CA:
 * - the CRL file is written by the existing writers (crl-file-sync.ts, the agent's target):
 *   verified, temp file + fsync + rename, the broker signalled after; a link never needs rewriting
 *   when the CRL changes, so a revocation writes the CRL once (48 MB at a million entries), not twice;
 * - OpenSSL's by_dir loads every CRL of the file it opens (X509_load_crl_file), so with several CAs
 *   (the file holds each CA's CRL) any CA's link loads them all; two CAs whose subject hashes
 *   collide (or that share a subject name across a rollover) need no `.r1`: the one `.r0` loads
 *   both CRLs, and OpenSSL picks the one that verifies with the issuing CA;
 * - a link whose file is missing or unreadable, or a missing link, means no CRL for that CA: the
 *   handshake fails (X509_V_ERR_UNABLE_TO_GET_CRL), fail closed, unlike a bad `crlfile`
 *   (Mosquitto 2.0 fails open on that).
 *
 * Enforcement rests on Mosquitto building a new SSL_CTX at every reload (the lookup never re-reads
 * a `.r0` it loaded): `mosquitto_security_apply` does so for every listener with `crlfile` and
 * `require_certificate` (1.x, 2.0.x and later), which the placeholder `crlfile` keeps in place.
 * test/broker-crl-capath.test.ts fails if a Mosquitto stops doing so.
 *
 * Nothing else goes into the folder: an `<hash>.<n>` file there would be a trusted CA certificate
 * for the device listener. Only `<8 hex>.r<n>` names are touched here.
 */
import { lstat, mkdir, readdir, readlink, rename, symlink, unlink } from 'node:fs/promises';
import path from 'node:path';
import { fsyncDir, tempPathFor } from '../support/atomic-file.ts';
import { isMissing } from '../support/missing-file.ts';

/** The hash folder that goes with a CRL file: `<crlFile>.hash`. */
export const crlHashDirFor = (crlFile: string): string => `${crlFile}.hash`;

const LINK_NAME = /^[0-9a-f]{8}\.r\d+$/;

/**
 * Makes `dir` hold exactly one `<hash>.r0` link to `../<basename of crlFile>` for each of
 * `hashes` (links for other hashes, and any `.r1`…, are removed unless `prune` is false).
 * Each link is made under a temp name and renamed into place, and the folder fsynced, only when
 * something changed. Returns whether anything changed.
 */
export async function syncCrlHashLinks(dir: string, crlFile: string, hashes: Iterable<string>, options: { prune?: boolean } = {}): Promise<boolean> {
  if (path.resolve(path.dirname(dir)) !== path.resolve(path.dirname(crlFile))) throw new Error(`${dir} must be beside ${crlFile}`);
  const target = path.join('..', path.basename(crlFile));
  const want = new Set([...hashes].map((h) => `${h}.r0`));
  for (const name of want) if (!LINK_NAME.test(name)) throw new Error(`not a subject hash: ${name}`);
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const present = (await readdir(dir)).filter((n) => LINK_NAME.test(n));
  let changed = false;
  for (const name of want) {
    const file = path.join(dir, name);
    if (present.includes(name) && (await linkTarget(file)) === target) continue;
    const tmp = tempPathFor(file);
    await symlink(target, tmp);
    try {
      await rename(tmp, file);
    } catch (error) {
      await unlink(tmp).catch(() => undefined);
      throw error;
    }
    changed = true;
  }
  if (options.prune ?? true) {
    for (const name of present) {
      if (want.has(name)) continue;
      await unlink(path.join(dir, name)).catch((error: NodeJS.ErrnoException) => {
        if (!isMissing(error)) throw error;
      });
      changed = true;
    }
  }
  if (changed) await fsyncDir(dir);
  return changed;
}

/** The link's target; null when `file` is not a symbolic link. */
async function linkTarget(file: string): Promise<string | null> {
  const st = await lstat(file);
  return st.isSymbolicLink() ? readlink(file) : null;
}
