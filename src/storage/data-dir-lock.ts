import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';

export class DataDirLockedError extends Error {}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/**
 * PGlite has no lock of its own: two processes on one data folder silently lose
 * writes. An exclusive lock file (O_EXCL) holding our PID makes the second one stop.
 * A lock left by a dead process is taken over.
 */
export function lockDataDir(
  lockPath: string,
  inUse: (holder: number) => string = (holder) =>
    `the embedded database is in use by process ${holder} (lock ${lockPath}). ` +
    'Stop that process, or use DATABASE_URL to share one Postgres between processes.',
): () => void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lockPath, 'wx', 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        rmSync(lockPath, { force: true });
      };
      process.once('exit', release);
      return release;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const holder = Number(readFileSync(lockPath, 'utf8').trim());
      if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && alive(holder)) {
        throw new DataDirLockedError(inUse(holder));
      }
      rmSync(lockPath, { force: true });
    }
  }
  throw new DataDirLockedError(`could not take the lock ${lockPath}`);
}
