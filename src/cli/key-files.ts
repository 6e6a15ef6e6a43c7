import { mkdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { writeFileAtomic, writeFileAtomicNew } from '../support/atomic-file.ts';
import type { FlagSpec } from './spec.ts';
import { unlessMissing } from '../support/missing-file.ts';

export interface IssuedFiles {
  key_path: string | null;
  cert_path: string;
  ca_path: string;
  /** Files that were already there and were kept, each with the new file written beside it. */
  kept: { existing: string; written: string }[];
}

export interface Issued {
  cert_pem: string;
  private_key_pem?: string;
  ca_cert_pem: string;
}

export const keyPath = (dir: string, deviceId: string, suffix = '') => join(dir, `${deviceId}${suffix}.key`);
export const certPath = (dir: string, deviceId: string, suffix = '') => join(dir, `${deviceId}${suffix}.crt`);

export const forceFlag: FlagSpec = {
  type: 'boolean',
  help: 'replace existing DEVICE.key / DEVICE.crt in --out (default: keep them and write the new files beside them as DEVICE.ID.key / DEVICE.ID.crt)',
};

/** The issuing answer's certificate id, so a file written beside an existing one is named after it. */
export interface WriteOptions {
  certificateId: number;
  /** Replace existing files (--force). */
  force?: boolean;
}

const isExists = (e: unknown) => (e as NodeJS.ErrnoException).code === 'EEXIST';

async function sameContent(file: string, data: string): Promise<boolean> {
  return (await unlessMissing(readFile(file, 'utf8'))) === data;
}

/**
 * Writes a new file without ever replacing another one: `first`, or when something different is
 * there, the first free name of `beside(n)`. The same content already at `first` counts as written.
 */
async function writeNew(first: string, beside: (n: number) => string, data: string, mode: number): Promise<string> {
  try {
    await writeFileAtomicNew(first, data, mode);
    return first;
  } catch (e) {
    if (!isExists(e)) throw e;
    if (await sameContent(first, data)) return first;
  }
  for (let n = 1; ; n++) {
    const file = beside(n);
    try {
      await writeFileAtomicNew(file, data, mode);
      return file;
    } catch (e) {
      if (!isExists(e)) throw e;
      if (await sameContent(file, data)) return file;
    }
  }
}

/** The name the n-th attempt takes: DEVICE, then DEVICE.<certificate id>, DEVICE.<certificate id>-2, … */
const suffixFor = (id: number, n: number) => (n === 0 ? '' : n === 1 ? `.${id}` : `.${id}-${n}`);

/** Free for `data`: nothing there, or exactly `data` already (a retried write). */
async function freeFor(file: string, data: string): Promise<boolean> {
  const existing = await readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return null;
    throw e;
  });
  return existing === null || existing === data;
}

/** Writes `data` at `file` unless exactly that is there already; EEXIST when something else is. */
async function writeOnce(file: string, data: string, mode: number): Promise<void> {
  try {
    await writeFileAtomicNew(file, data, mode);
  } catch (e) {
    if (!isExists(e) || !(await sameContent(file, data))) throw e;
  }
}

/**
 * Writes what the server returned: the key first (it exists nowhere else), then the
 * certificate, each atomically with mode 0600; the CA as ca.crt. The key and its certificate
 * always share one name, DEVICE.key / DEVICE.crt, so whoever reads the pair gets a matching
 * one. An existing DEVICE.key or DEVICE.crt, or a different ca.crt, is never replaced (unless
 * `force`): the pair then goes beside it as DEVICE.<certificate id>.key / .crt
 * (ca.<certificate id>.crt), and `kept` names what stayed.
 */
export async function writeIssued(dir: string, deviceId: string, issued: Issued, options: WriteOptions): Promise<IssuedFiles> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const id = options.certificateId;
  const keyPem = issued.private_key_pem ?? null;
  let key: string | null = null;
  let cert = certPath(dir, deviceId);
  if (options.force) {
    if (keyPem !== null) await writeFileAtomic((key = keyPath(dir, deviceId)), keyPem, 0o600);
    await writeFileAtomic(cert, issued.cert_pem, 0o600);
  } else {
    for (let n = 0; ; n++) {
      const k = keyPath(dir, deviceId, suffixFor(id, n));
      const c = certPath(dir, deviceId, suffixFor(id, n));
      // Both names must be free: a key left without its certificate (or the reverse) is kept,
      // and the new pair goes beside it rather than half under each name.
      if (!(await freeFor(c, issued.cert_pem)) || (keyPem !== null && !(await freeFor(k, keyPem)))) continue;
      try {
        if (keyPem !== null) await writeOnce(k, keyPem, 0o600);
        await writeOnce(c, issued.cert_pem, 0o600);
      } catch (e) {
        if (isExists(e)) continue; // taken between the check and the write: the next name
        throw e;
      }
      key = keyPem === null ? null : k;
      cert = c;
      break;
    }
  }
  const ca = await writeNew(join(dir, 'ca.crt'), (n) => join(dir, `ca${suffixFor(id, n)}.crt`), issued.ca_cert_pem, 0o644);
  const kept = (
    [
      [key, keyPath(dir, deviceId)],
      [cert, certPath(dir, deviceId)],
      [ca, join(dir, 'ca.crt')],
    ] as const
  )
    .filter(([written, existing]) => written !== null && written !== existing)
    .map(([written, existing]) => ({ existing, written: written as string }));
  return { key_path: key, cert_path: cert, ca_path: ca, kept };
}

/** "DEV-1.key, DEV-1.crt already existed and were kept; the new files are …/DEV-1.42.key, …/DEV-1.42.crt (--force replaces)". */
export function keptNote(files: IssuedFiles): string {
  if (files.kept.length === 0) return '';
  const existing = files.kept.map((k) => basename(k.existing)).join(', ');
  return `${existing} already existed and ${files.kept.length === 1 ? 'was' : 'were'} kept; the new ${files.kept.length === 1 ? 'file is' : 'files are'} ${files.kept.map((k) => k.written).join(', ')} (--force replaces)`;
}
