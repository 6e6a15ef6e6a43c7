/**
 * Start-up as a user meets it, with the compiled bin (`npm start` is `node bin/certfleet.js serve`):
 * a first start on an empty data dir (PGlite from the build's template, migrations checked, the
 * development CA created) until `/readyz` answers 200, a restart on the same data dir, and
 * `certfleet --help`. The PGlite share is measured in the same run: a bare process that only opens
 * PGlite (new from the template, then the existing database) and closes it. For each, wall time and
 * the CPU time the process used (user + system, from /proc before it is stopped): on this shared
 * 2-core machine the wall time stretches with the load, the CPU time much less. The 1-minute load
 * average is printed beside each row.
 *
 *   npm run build && node --import tsx bench/startup.bench.ts
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { emitTable, round, scaled } from './support/results.ts';

const ROOT = join(import.meta.dirname, '..');
const BIN = join(ROOT, 'bin', 'certfleet.js');
const TICK_MS = 1000 / 100; // USER_HZ

function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime, stime, cutime, cstime: fields 14-17 of stat (index 11-14 after the command)
  return (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) * TICK_MS;
}

/** `certfleet serve` on PGlite in dataDir until /readyz is 200; its wall and CPU milliseconds. */
async function startToReady(dataDir: string): Promise<{ wallMs: number; cpuMs: number }> {
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const env: Record<string, string | undefined> = { ...process.env, CERTFLEET_DATA_DIR: dataDir, PORT: String(port), LOG_LEVEL: 'warn' };
  delete env.DATABASE_URL;
  const t0 = performance.now();
  const child = spawn(process.execPath, [BIN, 'serve'], { cwd: ROOT, env, stdio: 'ignore' });
  let exited = false;
  child.once('exit', () => (exited = true));
  for (;;) {
    if (exited) throw new Error('certfleet serve exited before it was ready');
    if (await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.status === 200, () => false)) break;
    await new Promise((r) => setTimeout(r, 10)); // polling the readiness endpoint, as an orchestrator does
  }
  const wallMs = performance.now() - t0;
  const cpuMs = cpuMsOf(child.pid!);
  child.kill('SIGTERM');
  if (!exited) await new Promise((r) => child.once('exit', r));
  return { wallMs, cpuMs };
}

/** A process that only opens PGlite on dir (from the template when dir is empty, unpacked as the service does) and closes it. */
function pgliteOnly(dir: string): { wallMs: number; cpuMs: number } {
  const script = join(mkdtempSync(join(tmpdir(), 'certfleet-pglite-')), 'open.mjs');
  writeFileSync(
    script,
    `const { openPglite } = await import(${JSON.stringify(join(ROOT, 'dist/storage/pglite-driver.js'))});
     const { templateFor, unpackTemplate } = await import(${JSON.stringify(join(ROOT, 'dist/storage/pglite-template.js'))});
     const unpacked = unpackTemplate(process.argv[2]); // as openStorage does: Node unpacks the template, PGlite opens it
     const db = await openPglite(process.argv[2], unpacked ? undefined : templateFor(process.argv[2]));
     await db.query('SELECT 1');
     await db.close();`,
  );
  const t0 = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', '%U %S', process.execPath, script, dir], { encoding: 'utf8' });
  const wallMs = performance.now() - t0;
  if (r.status !== 0) throw new Error(`pglite open failed: ${r.stderr}`);
  const [user, sys] = r.stderr.trim().split('\n').pop()!.split(' ').map(Number);
  return { wallMs, cpuMs: (user + sys) * 1000 };
}

function helpRun(): { wallMs: number; cpuMs: number } {
  const t0 = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', '%U %S', process.execPath, BIN, '--help'], { encoding: 'utf8' });
  const wallMs = performance.now() - t0;
  if (r.status !== 0) throw new Error(`--help failed: ${r.stderr}`);
  const [user, sys] = r.stderr.trim().split('\n').pop()!.split(' ').map(Number);
  return { wallMs, cpuMs: (user + sys) * 1000 };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) throw new Error('run `npm run build` first: the bench starts the compiled bin, as `npm start` does');
const runs = scaled(3, 1);
const rows: (string | number)[][] = [];
const add = (what: string, samples: { wallMs: number; cpuMs: number; load: number }[], target: string) => {
  rows.push([what, samples.length, round(median(samples.map((s) => s.wallMs)), 0), round(median(samples.map((s) => s.cpuMs)), 0), target, round(median(samples.map((s) => s.load)), 1)]);
  console.log(`${what}: wall ${samples.map((s) => Math.round(s.wallMs)).join(', ')} ms; cpu ${samples.map((s) => Math.round(s.cpuMs)).join(', ')} ms; load ${samples.map((s) => s.load.toFixed(1)).join(', ')}`);
};

const first: { wallMs: number; cpuMs: number; load: number }[] = [];
const restart: typeof first = [];
const pgNew: typeof first = [];
const pgOpen: typeof first = [];
for (let i = 0; i < runs; i++) {
  const dir = mkdtempSync(join(tmpdir(), 'certfleet-start-'));
  first.push({ ...(await startToReady(dir)), load: loadavg()[0] });
  restart.push({ ...(await startToReady(dir)), load: loadavg()[0] });
  rmSync(dir, { recursive: true, force: true });
  const pg = mkdtempSync(join(tmpdir(), 'certfleet-pglite-db-'));
  pgNew.push({ ...pgliteOnly(pg), load: loadavg()[0] });
  pgOpen.push({ ...pgliteOnly(pg), load: loadavg()[0] });
  rmSync(pg, { recursive: true, force: true });
}
const help = Array.from({ length: runs * 5 }, () => ({ ...helpRun(), load: loadavg()[0] }));
add('`npm start` (serve) first start, empty data dir → /readyz 200', first, '≤ 5,000 ms');
add('of which: PGlite alone, new from the template (bare process)', pgNew, '-');
add('`npm start` (serve) restart → /readyz 200', restart, '≤ 2,000 ms');
add('of which: PGlite alone, existing database (bare process)', pgOpen, '-');
add('`certfleet --help`', help, '≤ 150 ms');
emitTable({
  id: 'startup',
  title: 'Start-up',
  description:
    'The compiled bin as `npm start` runs it (`certfleet serve`, embedded PGlite, no DATABASE_URL), polled every 10 ms until `/readyz` answers 200; ' +
    'first start on an empty data dir (database from the build\'s PGlite template, migrations checked, development CA created), then a restart on the same dir. ' +
    'PGlite alone: a bare Node process that opens PGlite on an empty dir (from the template) or on the existing database, runs `SELECT 1` and closes it, in the same run: ' +
    'the floor that PGlite sets under a start. Medians; CPU is user + system time of the process (the threads of PGlite\'s WebAssembly included). ' +
    'No peer: openssl, python and cfssl have no embedded database to open.',
  columns: ['what', 'runs', 'wall ms (median)', 'CPU ms (median)', 'target (wall, idle machine)', 'load avg (1 min)'],
  rows,
  notes: ['Wall time on a shared 2-core machine stretches with the load average; CPU time is what the start costs whatever the load.'],
});
