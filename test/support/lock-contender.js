// One process contending for the data-dir lock (test/data-dir-lock.test.ts): prints READY,
// tries the lock on "go", prints HELD or LOCKED, and keeps what it got until stdin closes.
// Plain JavaScript, so that a start costs Node alone (~0.08 s of CPU, against ~0.45 s through tsx;
// the test starts 44): it imports the lock module the test names (argv[3]), the compiled dist/ one
// when it is current, else src/ with the test adding `--import tsx`.
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';

const [lockPath, lockModule] = process.argv.slice(2);
const { DataDirLockedError, lockDataDir } = await import(pathToFileURL(lockModule).href);
const lines = createInterface({ input: process.stdin });
process.stdout.write('READY\n');
lines.on('line', (line) => {
  if (line !== 'go') return;
  try {
    lockDataDir(lockPath);
    process.stdout.write('HELD\n');
  } catch (e) {
    process.stdout.write(e instanceof DataDirLockedError ? 'LOCKED\n' : `ERROR ${e.message}\n`);
  }
});
lines.on('close', () => process.exit(0));
