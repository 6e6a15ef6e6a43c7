import { linkSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { fsyncDirSync, tempPathFor, writeFileAtomicSync, writeNewFileDurablySync } from '../support/atomic-file.ts';
import { isMissing } from '../support/missing-file.ts';

export class DataDirLockedError extends Error {}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

const RELEASED = 'released';

/** Creates `path` with `content` in one step (a reader never sees it empty); false when it exists. */
function createExclusive(path: string, content: string): boolean {
  const tmp = tempPathFor(path);
  writeNewFileDurablySync(tmp, content, 0o600);
  try {
    linkSync(tmp, path);
    fsyncDirSync(dirname(path));
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  } finally {
    rmSync(tmp, { force: true });
  }
}

/** The newest generation of the lock (`db.lock.<n>`) and its holder's pid (null: released or unreadable). */
function newestGeneration(lockPath: string): { generation: number; holder: number | null } {
  const prefix = `${basename(lockPath)}.`;
  let generation = 0;
  for (const name of readdirSync(dirname(lockPath))) {
    const n = name.startsWith(prefix) ? Number(name.slice(prefix.length)) : NaN;
    if (Number.isSafeInteger(n) && n > generation) generation = n;
  }
  if (generation === 0) return { generation, holder: null };
  let text: string;
  try {
    text = readFileSync(`${lockPath}.${generation}`, 'utf8').trim();
  } catch (error) {
    if (!isMissing(error)) throw error;
    return newestGeneration(lockPath); // cleaned up meanwhile: a newer one exists
  }
  const pid = Number(text);
  return { generation, holder: text !== RELEASED && Number.isInteger(pid) && pid > 0 ? pid : null };
}


/**
 * PGlite has no lock of its own: two processes on one data folder silently lose writes.
 * The lock is a sequence of generation files `<lockPath>.<n>` holding the holder's PID; the
 * newest generation is the lock. A start that finds the newest one released, or left by a
 * dead process, creates the next generation exclusively (link(2): exactly one process can
 * create generation n+1), so a stale lock is taken over atomically: of any number of
 * simultaneous starts exactly one wins, the others see a live holder. Generations never
 * go back, so a start that looked at an old generation cannot win a lock a newer one holds.
 */
export function lockDataDir(
  lockPath: string,
  inUse: (holder: number) => string = (holder) =>
    `the embedded database is in use by process ${holder} (lock ${lockPath}). ` +
    'Stop that process, or use DATABASE_URL to share one Postgres between processes.',
): () => void {
  const lockedBy = (holder: number) => new DataDirLockedError(inUse(holder));
  // A lock file of an older certfleet (one fixed name) with a live process.
  try {
    const legacy = Number(readFileSync(lockPath, 'utf8').trim());
    if (Number.isInteger(legacy) && legacy > 0 && legacy !== process.pid && alive(legacy)) throw lockedBy(legacy);
  } catch (e) {
    if (e instanceof DataDirLockedError) throw e;
  }
  for (let attempt = 0; attempt < 100; attempt++) {
    const newest = newestGeneration(lockPath);
    if (newest.holder !== null && newest.holder !== process.pid && alive(newest.holder)) throw lockedBy(newest.holder);
    const mine = newest.generation + 1;
    const path = `${lockPath}.${mine}`;
    if (!createExclusive(path, String(process.pid))) continue; // another start won this generation: look again
    if (newestGeneration(lockPath).generation !== mine) {
      // Created from an outdated view after older generations were cleaned up: a newer one rules.
      rmSync(path, { force: true });
      continue;
    }
    for (let old = newest.generation; old >= 1; old--) rmSync(`${lockPath}.${old}`, { force: true });
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      // Marked released, not removed: the generation number stays, so it never goes back.
      try {
        writeFileAtomicSync(path, RELEASED, 0o600);
      } catch (e) {
        // Not silent: the next start sees a holder that is gone and takes the next generation.
        process.stderr.write(`certfleet: could not mark the data-dir lock ${path} released: ${(e as Error).message}\n`);
      }
    };
    process.once('exit', release);
    return release;
  }
  throw new DataDirLockedError(`could not take the lock ${lockPath}`);
}
