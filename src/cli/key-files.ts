import { mkdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { writeFileAtomic, writeFileAtomicNew } from '../support/atomic-file.ts';
import type { FlagSpec } from './spec.ts';

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
  return (await readFile(file, 'utf8').catch(() => null)) === data;
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

/**
 * Writes what the server returned: the key first (it exists nowhere else), then the
 * certificate, each atomically with mode 0600; the CA as ca.crt. An existing DEVICE.key,
 * DEVICE.crt or a different ca.crt is never replaced (unless `force`): the new files go beside
 * it as DEVICE.<certificate id>.key / .crt (ca.<certificate id>.crt), and `kept` names what stayed.
 */
export async function writeIssued(dir: string, deviceId: string, issued: Issued, options: WriteOptions): Promise<IssuedFiles> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const id = options.certificateId;
  const write = async (first: string, beside: (n: number) => string, data: string, mode: number) => {
    if (options.force) {
      await writeFileAtomic(first, data, mode);
      return first;
    }
    return writeNew(first, beside, data, mode);
  };
  const suffix = (n: number) => (n === 1 ? `.${id}` : `.${id}-${n}`);
  let key: string | null = null;
  if (issued.private_key_pem) key = await write(keyPath(dir, deviceId), (n) => keyPath(dir, deviceId, suffix(n)), issued.private_key_pem, 0o600);
  const cert = await write(certPath(dir, deviceId), (n) => certPath(dir, deviceId, suffix(n)), issued.cert_pem, 0o600);
  const ca = await writeNew(join(dir, 'ca.crt'), (n) => join(dir, `ca${suffix(n)}.crt`), issued.ca_cert_pem, 0o644);
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
