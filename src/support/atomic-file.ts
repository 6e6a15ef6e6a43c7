/**
 * Durable file replacement: write a temp file in the same folder (created with its final mode),
 * fsync it, rename it over the target, fsync the folder. A crash leaves the old file or the new
 * one, never a mix.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fchmodSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { link, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { isMissing, unlessMissing } from './missing-file.ts';

/** A file's owner, kept when a file is replaced (root only: a rename gives the file its writer's owner). */
export interface FileOwner {
  uid: number;
  gid: number;
}

/** Creates `file` (must not exist) with `mode`, writes `data`, fsyncs and closes it. */
export async function writeNewFileDurably(file: string, data: string | Uint8Array, mode: number, owner?: FileOwner): Promise<void> {
  const handle = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  try {
    // One write call for the whole buffer (looping only on a short write): FileHandle.writeFile
    // writes 512 KiB per call, so a 60 MB CRL took 120 thread-pool round trips, each waiting for a
    // turn of the main thread (busy with the next CRL variant meanwhile).
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    for (let at = 0; at < bytes.length; ) {
      const { bytesWritten } = await handle.write(bytes, at, bytes.length - at, at);
      if (bytesWritten <= 0) throw new Error(`could not write ${file}: no progress at byte ${at}`);
      at += bytesWritten;
    }
    if (owner) await handle.chown(owner.uid, owner.gid);
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
export async function writeFileAtomic(file: string, data: string | Uint8Array, mode: number, owner?: FileOwner): Promise<void> {
  const tmp = tempPathFor(file);
  try {
    await writeNewFileDurably(tmp, data, mode, owner);
    await rename(tmp, file);
  } catch (error) {
    await unlink(tmp).catch(() => {}); // cleanup only: the write's own error is thrown below
    throw error;
  }
  await fsyncDir(path.dirname(file));
}

/**
 * Like writeFileAtomic, but never replaces: the temp file is hard-linked to `file`, which fails
 * with EEXIST when something is already there (even when it appeared a moment ago).
 */
export async function writeFileAtomicNew(file: string, data: string | Uint8Array, mode: number): Promise<void> {
  const tmp = tempPathFor(file);
  try {
    await writeNewFileDurably(tmp, data, mode);
    await link(tmp, file);
  } finally {
    await unlink(tmp).catch(() => {}); // the link (or the error) is what counts; a leftover temp name is harmless
  }
  await fsyncDir(path.dirname(file));
}

/**
 * Keeps what is at `file` before it is replaced: hard-links it to `file.old-N` (the first free N).
 * Returns that name, or null when there was nothing to keep (no file, or the same content as
 * `replacement`).
 */
export async function keepPrevious(file: string, replacement?: string): Promise<string | null> {
  if (replacement !== undefined && (await unlessMissing(readFile(file, 'utf8'))) === replacement) return null;
  for (let n = 1; ; n++) {
    const kept = `${file}.old-${n}`;
    try {
      await link(file, kept);
      return kept;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return null;
      if (code !== 'EEXIST') throw e;
    }
  }
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
  } catch (error) {
    if (isMissing(error)) return false;
    throw error; // EACCES on the way is not "no such file": the caller would overwrite or recreate it
  }
}
