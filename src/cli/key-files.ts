import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../support/atomic-file.ts';

export interface IssuedFiles {
  key_path: string | null;
  cert_path: string;
  ca_path: string;
}

export interface Issued {
  cert_pem: string;
  private_key_pem?: string;
  ca_cert_pem: string;
}

export const keyPath = (dir: string, deviceId: string) => join(dir, `${deviceId}.key`);
export const certPath = (dir: string, deviceId: string) => join(dir, `${deviceId}.crt`);

/**
 * Writes what the server returned: the key first (it exists nowhere else), then the
 * certificate, each atomically with mode 0600 (temp file, fsync, rename); the CA as ca.crt.
 */
export async function writeIssued(dir: string, deviceId: string, issued: Issued): Promise<IssuedFiles> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  let key: string | null = null;
  if (issued.private_key_pem) {
    key = keyPath(dir, deviceId);
    await writeFileAtomic(key, issued.private_key_pem, 0o600);
  }
  const cert = certPath(dir, deviceId);
  await writeFileAtomic(cert, issued.cert_pem, 0o600);
  const ca = join(dir, 'ca.crt');
  await writeFileAtomic(ca, issued.ca_cert_pem, 0o644);
  return { key_path: key, cert_path: cert, ca_path: ca };
}
