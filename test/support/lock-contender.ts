// One process contending for the data-dir lock (test/data-dir-lock.test.ts): prints READY,
// tries the lock on "go", prints HELD or LOCKED, and keeps what it got until stdin closes.
import { createInterface } from 'node:readline';
import { DataDirLockedError, lockDataDir } from '../../src/storage/data-dir-lock.ts';

const lockPath = process.argv[2];
const lines = createInterface({ input: process.stdin });
process.stdout.write('READY\n');
lines.on('line', (line) => {
  if (line !== 'go') return;
  try {
    lockDataDir(lockPath);
    process.stdout.write('HELD\n');
  } catch (e) {
    process.stdout.write(e instanceof DataDirLockedError ? 'LOCKED\n' : `ERROR ${(e as Error).message}\n`);
  }
});
lines.on('close', () => process.exit(0));
