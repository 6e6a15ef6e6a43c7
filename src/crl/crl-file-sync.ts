/**
 * Keeps the broker's CRL file (CRL_OUTPUT_PATH) equal to the latest stored CRL, and makes the
 * broker reload it. The file is never wrong: a CRL is written only when it is newer than the
 * file's (by CRL number; a missing, unreadable or foreign file counts as older) and passes
 * verifyCrl again; it goes to a temp file in the same folder, is fsynced, renamed over the old
 * one, and only then is the broker signalled (Mosquitto 2.0 fails open on a bad or missing file),
 * while the folder is fsynced (a sync resolves once it is). A crash at any point leaves the
 * previous file or the new one, both valid. A failed reload is remembered and retried by the next
 * sync (the file stays valid).
 */
import { closeSync, constants, fchmodSync, mkdirSync, fstatSync, fsync, openSync, readSync, renameSync, statSync, unlinkSync, write } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { basename, dirname, join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import type { Clock } from '../domain/clock.ts';
import { crlDerToPemBytesAsync, crlPemByteLength, crlPemToDer, peekCrlNumber, verifyCrl } from './verify-crl.ts';
import type { BrokerReloader } from '../broker/broker-reloader.ts';
import { tempPathFor } from '../support/atomic-file.ts';
import { sharedBuffer } from '../support/crl-thread.ts';
import type { Logger } from '../support/logger.ts';
import { unlessMissing } from '../support/missing-file.ts';

/** The file operations the sync uses: a port, so tests can make a step fail (a crash before the rename). */
export interface CrlFs {
  /** Creates `path` (must not exist) with `mode`, writes `data`, fsyncs and closes it. */
  writeNewFileDurably(path: string, data: Uint8Array, mode: number): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  fsyncDir(dir: string): Promise<void>;
  unlink(path: string): Promise<void>;
  readFile(path: string): Promise<Buffer>;
  /** The last `bytes` bytes of the file (all of it if smaller); null when it does not exist. */
  readTail(path: string, bytes: number): Promise<Buffer | null>;
  /** null when the file does not exist. */
  identity(path: string): Promise<string | null>;
  mkdirp(dir: string): Promise<void>;
  /** Names in `dir` ([] when it does not exist). */
  list(dir: string): Promise<string[]>;
}

/**
 * The node implementation. Only the two fsyncs (the temp file's, the folder's) and the data write
 * go to libuv's thread pool; the metadata calls around them (open, chmod, close, stat, rename, the
 * claim's 4 KiB tail read) are synchronous: each takes microseconds, while each thread-pool round
 * trip waits for a turn of the main thread, which a publication keeps busy with the served variant
 * (lint, CA signature, store) meanwhile. A write used to take about 14 such round trips; now 3.
 */
export const nodeCrlFs: CrlFs = {
  async writeNewFileDurably(path, data, mode) {
    const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
    try {
      // One write call for the whole buffer (looping only on a short write), in the thread pool.
      for (let at = 0; at < data.length; ) {
        const written = await writeAsync(fd, data, at, data.length - at, at);
        if (written <= 0) throw new Error(`could not write ${path}: no progress at byte ${at}`);
        at += written;
      }
      fchmodSync(fd, mode); // the umask may have narrowed it
      await fsyncAsync(fd);
    } finally {
      closeSync(fd);
    }
  },
  rename: async (from, to) => renameSync(from, to),
  async fsyncDir(dir) {
    const fd = openSync(dir, constants.O_RDONLY);
    try {
      await fsyncAsync(fd);
    } finally {
      closeSync(fd);
    }
  },
  unlink: async (path) => unlinkSync(path),
  readFile: (path) => readFile(path),
  async readTail(path, bytes) {
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDONLY);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
    try {
      const { size } = fstatSync(fd);
      const length = Math.min(size, bytes);
      const buffer = Buffer.alloc(length);
      const bytesRead = readSync(fd, buffer, 0, length, size - length);
      return buffer.subarray(0, bytesRead);
    } finally {
      closeSync(fd);
    }
  },
  async identity(path) {
    const s = statSync(path, { bigint: true, throwIfNoEntry: false });
    return s ? `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}` : null;
  },
  mkdirp: async (dir) => {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
  },
  async list(dir) {
    try {
      return await readdir(dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
  },
};

const fsyncAsync = promisify(fsync);
const writeAsync = (fd: number, data: Uint8Array, offset: number, length: number, position: number) =>
  new Promise<number>((resolve, reject) => write(fd, data, offset, length, position, (error, written) => (error ? reject(error) : resolve(written))));

export interface CrlFileSyncDeps {
  path: string;
  caPublicKey: KeyObject;
  issuerNameDer: Uint8Array;
  clock: Clock;
  reloader: BrokerReloader;
  logger: Logger;
  fs?: CrlFs;
  /** File mode of the CRL. Default 0644: the broker runs as another user, and a CRL is public. */
  mode?: number;
}

/** The CRL to put in place: its number, and its DER now or on demand (only loaded when the file is older). */
export interface CrlForFile {
  crlNumber: bigint;
  der?: Uint8Array;
  /**
   * The der was verified against this CA a moment ago by the publication that built it: not
   * verified again. A promise: its verification is under way (the signature, in the thread pool);
   * the PEM is made and the temp file written meanwhile, and the file is renamed into place only
   * once it resolved (rejected: the temp file is removed and the sync fails with its error).
   */
  verified?: boolean | Promise<unknown>;
  load?: () => Promise<Uint8Array | null>;
  /**
   * Signal the broker as soon as the file is in place, but resolve without waiting for the reload
   * (its outcome is `reloading`): the publication's transaction waits for the file, not the broker.
   */
  deferReload?: boolean;
  /**
   * Called once the new file is renamed into place and the broker signalled (in that same turn),
   * before the folder's fsync: the publication starts its served variant only then, so none of
   * its work delays the broker's file. Not called when nothing is written (up to date, failure).
   */
  onInPlace?: () => void;
}

export interface CrlFileSyncResult {
  /** written: the file now holds crlNumber; current: it already did; older: the file holds a newer CRL. */
  file: 'written' | 'current' | 'older';
  fileNumber: bigint | null;
  bytes?: number;
  writeMs?: number;
  /** Where writeMs went (ms from the write's start): PEM made, data written and fsynced, verification awaited, renamed (the broker signalled). */
  steps?: { pemMs: number; dataMs: number; verifiedMs: number; renamedMs: number };
  /** Whether the broker was told to reload (true), failed to (false), or was not due (null). */
  reloaded: boolean | null;
  reloadError?: string;
  /** With `deferReload`: the reload under way (`reloaded` is null until it settles); never rejects. */
  reloading?: Promise<{ reloaded: boolean | null; reloadError?: string }>;
}

export interface CrlFileSync {
  /** The file holds `crl` (or something newer) afterwards, and the broker was told. */
  sync(crl: CrlForFile): Promise<CrlFileSyncResult>;
  /**
   * The CRL Number the file claims, from its last lines only, not verified (null: no file, or
   * none found): a floor for the next CRL's number, which then replaces the file without the file
   * having to be read and verified whole (a second at a few million entries). A file that claims
   * a number at or above a CRL to write is verified before it is believed.
   */
  claimedNumber(): Promise<bigint | null>;
  /** Number of the valid CRL in the file (signed by our CA), null when missing or not valid. Cached by file identity. */
  fileNumber(): Promise<bigint | null>;
  /** A reload failed and has not succeeded since. */
  readonly reloadPending: boolean;
  /** A broker reload is configured (BROKER_PID_FILE or BROKER_RELOAD_COMMAND). */
  readonly reloadConfigured: boolean;
  /**
   * The DER of the CRL in the file now, unverified (what the broker has loaded); null when there is
   * no file. Any other failure (EACCES, not a PEM CRL) is thrown, never taken for "no file".
   */
  currentDer(): Promise<Uint8Array | null>;
  /**
   * Removes temp files a killed process left next to the file (at start): every one not staged by
   * this process whose process is gone, or has our pid (a restarted container's process has the
   * same pid as the killed one). Returns the names removed.
   */
  removeStaleTempFiles(): Promise<string[]>;
}

/** Alive on this host (another replica sharing the folder): its temp file may be in use. */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Enough of a PEM CRL's end for its extensions and signature (RSA-8192 included). */
const CLAIM_TAIL_BYTES = 4096;
/** crl_state.crl_number is a bigint: a claim beyond it is not a CRL of ours. */
const MAX_CLAIMED_NUMBER = 2n ** 62n;

export function createCrlFileSync(deps: CrlFileSyncDeps): CrlFileSync {
  const fs = deps.fs ?? nodeCrlFs;
  const mode = deps.mode ?? 0o644;
  const dir = dirname(deps.path);
  let cached: { identity: string; number: bigint | null } | null = null;
  let reloadPending = false;
  const tempPrefix = `.${basename(deps.path)}.`;
  const staged = new Set<string>();

  async function fileNumber(): Promise<bigint | null> {
    const identity = await fs.identity(deps.path);
    if (identity === null) return null;
    if (cached && cached.identity === identity) return cached.number;
    let number: bigint | null = null;
    try {
      const der = crlPemToDer((await fs.readFile(deps.path)).toString('latin1'));
      // Only the number matters here, so time is not checked (an expired file is still older than what replaces it).
      number = verifyCrl(der, { caPublicKey: deps.caPublicKey, issuerNameDer: deps.issuerNameDer, now: new Date(0) }).crlNumber;
    } catch (error) {
      deps.logger.warn({ path: deps.path, err: (error as Error).message }, 'the CRL file is not a valid CRL of this CA; it will be replaced');
    }
    cached = { identity, number };
    return number;
  }

  async function claimedNumber(): Promise<bigint | null> {
    const tail = await unlessMissing(fs.readTail(deps.path, CLAIM_TAIL_BYTES));
    const claimed = tail ? peekCrlNumber(tail.toString('latin1')) : null;
    return claimed !== null && claimed <= MAX_CLAIMED_NUMBER ? claimed : null;
  }

  /** The number of a valid CRL in the file at or above `number` (nothing to write then), else null. */
  async function notOlderOnFile(number: bigint): Promise<bigint | null> {
    const claimed = await claimedNumber();
    if (claimed === null || claimed < number) return null;
    const current = await fileNumber();
    return current !== null && current >= number ? current : null;
  }

  async function reload(): Promise<{ reloaded: boolean | null; reloadError?: string }> {
    if (!deps.reloader.configured) {
      reloadPending = false;
      return { reloaded: null };
    }
    try {
      await deps.reloader.reload();
      reloadPending = false;
      return { reloaded: true };
    } catch (error) {
      reloadPending = true;
      const message = (error as Error).message;
      deps.logger.error({ path: deps.path, err: message, reloader: deps.reloader.description }, 'broker reload failed; the CRL file is in place and valid, reload will be retried');
      return { reloaded: false, reloadError: message };
    }
  }

  /** The file already holds `crlNumber` or a newer CRL: nothing to write (a pending reload is retried). */
  async function upToDate(crlNumber: bigint, current: bigint): Promise<CrlFileSyncResult> {
    const result: CrlFileSyncResult = { file: crlNumber === current ? 'current' : 'older', fileNumber: current, reloaded: null };
    return reloadPending ? { ...result, ...(await reload()) } : result;
  }

  /**
   * The PEM buffer kept between writes (tens of MB at a million entries: a fresh one costs its page
   * faults, more CPU than encoding into it). Taken while a write uses it; a second write at the
   * same time (not the publisher's way: it runs one at a time) gets a buffer of its own.
   */
  let pemSpare: Buffer | null = null;
  const takePemBuffer = (size: number): Buffer => {
    const spare = pemSpare;
    pemSpare = null;
    // In shared memory: the CRL thread encodes part of a large CRL's PEM into it (support/crl-thread.ts).
    return spare && spare.length >= size ? spare : sharedBuffer(Math.ceil(size * 1.1));
  };

  async function write(crl: { crlNumber: bigint; der: Uint8Array; verified?: boolean | Promise<unknown>; deferReload?: boolean; onInPlace?: () => void }): Promise<CrlFileSyncResult> {
    const started = performance.now();
    // Nothing reaches the broker unchecked: a CRL that was not just verified by its publication
    // (one loaded from the database) is verified here. Verified and encoded right away (a large
    // CRL's PEM partly by the CRL thread at the same time, support/crl-thread.ts); the publisher
    // starts its next CPU work (the served variant) only once this file is in place.
    if (!crl.verified) {
      const verified = verifyCrl(crl.der, { caPublicKey: deps.caPublicKey, issuerNameDer: deps.issuerNameDer, now: deps.clock.now() });
      if (verified.crlNumber !== crl.crlNumber) throw new Error(`CRL number ${verified.crlNumber} differs from the expected ${crl.crlNumber}`);
    }
    // The file's number is read (I/O in the thread pool) while the PEM is made.
    const onFile = notOlderOnFile(crl.crlNumber);
    onFile.catch(() => undefined); // awaited below
    const buffer = takePemBuffer(crlPemByteLength(crl.der.length));
    try {
      const pem = await crlDerToPemBytesAsync(crl.der, buffer);
      return await writePem(crl, pem, onFile, started, performance.now() - started);
    } finally {
      pemSpare = buffer;
    }
  }

  async function writePem(
    crl: { crlNumber: bigint; verified?: boolean | Promise<unknown>; deferReload?: boolean; onInPlace?: () => void },
    pem: Buffer,
    onFile: Promise<bigint | null>,
    started: number,
    pemMs = 0,
  ): Promise<CrlFileSyncResult> {
    let dataMs = 0;
    let verifiedMs = 0;
    const current = await onFile;
    if (current !== null) return upToDate(crl.crlNumber, current);
    await fs.mkdirp(dir);
    const tmp = tempPathFor(deps.path);
    const name = basename(tmp);
    staged.add(name);
    try {
      await fs.writeNewFileDurably(tmp, pem, mode);
      dataMs = performance.now() - started;
      // Verified before it replaces the file (the verification ran while the PEM was made and written).
      if (typeof crl.verified === 'object') await crl.verified;
      verifiedMs = performance.now() - started;
      // Someone else (another replica on a shared folder) may have put a newer one there meanwhile.
      const now = await notOlderOnFile(crl.crlNumber);
      if (now !== null) {
        await fs.unlink(tmp).catch(() => undefined);
        return await upToDate(crl.crlNumber, now);
      }
      await fs.rename(tmp, deps.path);
    } catch (error) {
      await fs.unlink(tmp).catch(() => undefined);
      throw error;
    } finally {
      staged.delete(name);
    }
    cached = null;
    // The broker is signalled as soon as the verified file is in place: it reads the new file
    // whether or not the folder's fsync has finished. That fsync makes the rename durable across a
    // power loss, and this sync resolves only after it: a publication's commit (which removes the
    // revocations' pending marks) waits for it, so a power loss before it leaves the previous file
    // (valid) and the revocations pending, as a crash before the rename does.
    const reloading = reload(); // never rejects
    const renamedMs = performance.now() - started;
    crl.onInPlace?.();
    try {
      await fs.fsyncDir(dir);
    } catch (error) {
      await reloading;
      throw error;
    }
    const identity = await fs.identity(deps.path);
    if (identity !== null) cached = { identity, number: crl.crlNumber };
    const written = { file: 'written', fileNumber: crl.crlNumber, bytes: pem.length, writeMs: performance.now() - started, steps: { pemMs, dataMs, verifiedMs, renamedMs } } as const;
    if (crl.deferReload) return { ...written, reloaded: null, reloading };
    return { ...written, ...(await reloading) };
  }

  return {
    fileNumber,
    claimedNumber,
    get reloadPending() {
      return reloadPending;
    },
    get reloadConfigured() {
      return deps.reloader.configured;
    },
    async currentDer() {
      let pem: Buffer;
      try {
        pem = await fs.readFile(deps.path);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw error;
      }
      return crlPemToDer(pem.toString('latin1'));
    },
    async removeStaleTempFiles() {
      const removed: string[] = [];
      for (const name of await fs.list(dir)) {
        const m = name.startsWith(tempPrefix) ? /^(\d+)\.[0-9a-f]+\.tmp$/.exec(name.slice(tempPrefix.length)) : null;
        if (!m || staged.has(name)) continue;
        const pid = Number(m[1]);
        if (pid !== process.pid && processAlive(pid)) continue;
        await fs.unlink(join(dir, name)).catch(() => undefined);
        removed.push(name);
      }
      if (removed.length) deps.logger.info({ path: deps.path, removed }, 'removed temp CRL files left by a stopped process');
      return removed;
    },
    async sync(crl) {
      // In hand: verified and encoded right away, before anything else can run (write checks the file's number).
      if (crl.der) return write({ crlNumber: crl.crlNumber, der: crl.der, verified: crl.verified, deferReload: crl.deferReload, onInPlace: crl.onInPlace });
      const current = await notOlderOnFile(crl.crlNumber);
      if (current !== null) return upToDate(crl.crlNumber, current);
      const der = (await crl.load?.()) ?? null;
      if (!der) throw new Error(`CRL ${crl.crlNumber} is not available to write`);
      return write({ crlNumber: crl.crlNumber, der });
    },
  };
}
