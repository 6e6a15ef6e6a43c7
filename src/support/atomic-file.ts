/**
 * Durable file replacement: write a temp file in the same folder (created with its final mode),
 * fsync it, rename it over the target, fsync the folder. A crash leaves the old file or the new
 * one, never a mix.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fchmodSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { open, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';

/** Creates `file` (must not exist) with `mode`, writes `data`, fsyncs and closes it. */
export async function writeNewFileDurably(file: string, data: string | Uint8Array, mode: number): Promise<void> {
  const handle = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  try {
    await handle.writeFile(data);
    await handle.chmod(mode); // the umask may have narrowed it
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** fsync a folder, so a rename in it survives a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A unique temp file name next to `file` (same folder, so the rename is atomic). */
export const tempPathFor = (file: string): string =>
  path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);

/** temp file in the same folder → fsync → rename → fsync the folder. */
export async function writeFileAtomic(file: string, data: string | Uint8Array, mode: number): Promise<void> {
  const tmp = tempPathFor(file);
  try {
    await writeNewFileDurably(tmp, data, mode);
    await rename(tmp, file);
  } catch (error) {
    await unlink(tmp).catch(() => {});
    throw error;
  }
  await fsyncDir(path.dirname(file));
}

/** writeNewFileDurably, synchronously (for process 'exit' handlers and lock files). */
export function writeNewFileDurablySync(file: string, data: string | Uint8Array, mode: number): void {
  const fd = openSync(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fchmodSync(fd, mode);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function fsyncDirSync(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** writeFileAtomic, synchronously. */
export function writeFileAtomicSync(file: string, data: string | Uint8Array, mode: number): void {
  const tmp = tempPathFor(file);
  try {
    writeNewFileDurablySync(tmp, data, mode);
    renameSync(tmp, file);
  } catch (error) {
    rmSync(tmp, { force: true });
    throw error;
  }
  fsyncDirSync(path.dirname(file));
}

export async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}
