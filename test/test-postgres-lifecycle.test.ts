/**
 * The run's throw-away Postgres (scripts/test-setup.mjs, started by vitest's globalSetup when none
 * listens on 5432) does not outlive the run: Ctrl-C / SIGTERM make vitest exit without its global
 * teardown, so the cluster stops from an 'exit' listener; a run killed outright (SIGKILL) leaves
 * it running, and the next run reaps it. Each case starts a real cluster in a child process, in a
 * temporary folder of its own (TMPDIR), so no other run's cluster is touched.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { postgresBinDir, reapStaleTestPostgres } from '../scripts/test-setup.mjs';
import { scaled } from './support/timeouts.ts';

const SETUP = fileURLToPath(new URL('../scripts/test-setup.mjs', import.meta.url));
// Like vitest: SIGINT/SIGTERM end the process with process.exit(), never reaching a teardown.
const CHILD = `
const { startTestPostgres } = await import(${JSON.stringify(SETUP)});
const pg = await startTestPostgres(() => {});
for (const s of ['SIGINT', 'SIGTERM']) process.once(s, () => process.exit(130));
console.log(JSON.stringify({ dataDir: pg.dataDir }));
setInterval(() => {}, 60_000);
`;

/** The process runs (a zombie, ended but not yet collected by whoever adopted it, does not). */
const alive = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
};

const exited = (child: ChildProcess) => new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())));

const bases: string[] = [];
const children: ChildProcess[] = [];
afterEach(async () => {
  for (const child of children.splice(0)) {
    child.kill('SIGKILL');
    await exited(child);
  }
  // A cluster a failed case left behind: the folder's owner is gone by now.
  for (const base of bases.splice(0)) {
    reapStaleTestPostgres(() => {}, base);
    rmSync(base, { recursive: true, force: true });
  }
});

/** A child process that starts a throw-away cluster under its own TMPDIR; resolves once it runs. */
async function clusterInChild(): Promise<{ child: ChildProcess; base: string; dataDir: string; postmaster: number }> {
  const base = mkdtempSync(join(tmpdir(), 'certfleet-pg-lifecycle-'));
  chmodSync(base, 0o755); // as root, the cluster belongs to the postgres user, who must reach it
  bases.push(base);
  const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: base, TEST_POSTGRES: 'throwaway' };
  delete env.TEST_DATABASE_URL;
  const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.split('\n')[0]!);
    });
    child.once('exit', (code) => reject(new Error(`the child exited (${code}) before its cluster ran: ${out}`)));
  });
  const { dataDir } = JSON.parse(line) as { dataDir: string };
  const postmaster = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  expect(alive(postmaster)).toBe(true);
  return { child, base, dataDir, postmaster };
}

describe.skipIf(postgresBinDir() === null)('the throw-away Postgres of a test run', () => {
  it.each(['SIGINT', 'SIGTERM'] as const)(
    'stops with the run when %s ends it before the global teardown',
    async (signal) => {
      const { child, dataDir, postmaster } = await clusterInChild();
      child.kill(signal);
      await exited(child);
      expect(alive(postmaster)).toBe(false);
      expect(existsSync(dataDir)).toBe(false);
    },
    scaled(120_000),
  );

  it(
    'left running by a killed run, is stopped and deleted by the next run; a live run keeps its own',
    async () => {
      const killed = await clusterInChild();
      const live = await clusterInChild();
      killed.child.kill('SIGKILL');
      await exited(killed.child);
      expect(alive(killed.postmaster)).toBe(true); // what the reaper is for

      const log: string[] = [];
      expect(reapStaleTestPostgres((l) => log.push(l), killed.base)).toEqual([join(killed.dataDir, '..')]);
      expect(log.join('\n')).toContain('stopped and deleted the throw-away Postgres of an earlier run');
      expect(alive(killed.postmaster)).toBe(false);
      expect(existsSync(killed.dataDir)).toBe(false);

      expect(reapStaleTestPostgres(() => {}, live.base)).toEqual([]);
      expect(alive(live.postmaster)).toBe(true);
      live.child.kill('SIGTERM');
      await exited(live.child);
      expect(alive(live.postmaster)).toBe(false);
    },
    scaled(180_000),
  );
});
