import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';

const octal = (mode: number) => (mode & 0o7777).toString(8).padStart(4, '0');

/** Whoever can write the folder of `path` can replace the file: refused when group or others may write it. */
async function assertFolderNotWritableByOthers(path: string, what: string, replaces: string): Promise<void> {
  const dir = dirname(path);
  const dirMode = (await stat(dir)).mode;
  if (dirMode & 0o022) {
    throw new Error(
      `the folder ${dir} of ${what} ${path} is writable by group or others (mode ${octal(dirMode)}), so they could replace ${replaces}: ` +
        `run chmod go-w ${dir} (or keep it in a folder only its owner can write)`,
    );
  }
}

/**
 * A private key, secret key or token signing key file is refused when group or others have
 * any permission bit on it, or when its folder is writable by group or others (anyone there
 * could replace the key). The error names the file and the command that fixes it.
 */
export async function assertKeyFileProtected(path: string, what: string): Promise<void> {
  const fileMode = (await stat(path)).mode;
  if (fileMode & 0o077) {
    throw new Error(`${what} ${path} is accessible by group or others (mode ${octal(fileMode)}): run chmod 600 ${path}`);
  }
  await assertFolderNotWritableByOthers(path, what, 'the key');
}

/**
 * A public file certfleet trusts (the Device CA certificate: what it signs as and serves as
 * the trust anchor) may be readable by anyone, but is refused when group or others may
 * write it or its folder.
 */
export async function assertFileNotWritableByOthers(path: string, what: string): Promise<void> {
  const fileMode = (await stat(path)).mode;
  if (fileMode & 0o022) {
    throw new Error(`${what} ${path} is writable by group or others (mode ${octal(fileMode)}): run chmod go-w ${path}`);
  }
  await assertFolderNotWritableByOthers(path, what, 'it');
}
