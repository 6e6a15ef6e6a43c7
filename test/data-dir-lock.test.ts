import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { scaled } from './support/timeouts.ts';

const CONTENDER = join(import.meta.dirname, 'support', 'lock-contender.js');
const ROOT = join(import.meta.dirname, '..');

const newestMtime = (dir: string): number =>
  Math.max(0, ...readdirSync(dir, { withFileTypes: true }).map((e) => (e.isDirectory() ? newestMtime(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs)));

/** The lock module the contenders load: dist/'s when it is newer than every source (npm test builds it first), else src/'s through tsx. */
const DIST_LOCK = join(ROOT, 'dist', 'storage', 'data-dir-lock.js');
const CONTENDER_ARGS =
  process.env.CERTFLEET_TEST_FROM_SOURCES !== '1' && existsSync(DIST_LOCK) && statSync(DIST_LOCK).mtimeMs >= newestMtime(join(ROOT, 'src'))
    ? [CONTENDER]
    : ['--import', 'tsx', CONTENDER];
const LOCK_MODULE = CONTENDER_ARGS.length === 1 ? DIST_LOCK : join(ROOT, 'src', 'storage', 'data-dir-lock.ts');

interface Contender {
  child: ChildProcessWithoutNullStreams;
  next(): Promise<string>;
}

function startContender(lockPath: string): Contender {
  const child = spawn(process.execPath, [...CONTENDER_ARGS, lockPath, LOCK_MODULE], { stdio: ['pipe', 'pipe', 'pipe'] });
  const queue: string[] = [];
  const waiting: Array<(line: string) => void> = [];
  createInterface({ input: child.stdout }).on('line', (line) => (waiting.length ? waiting.shift()!(line) : queue.push(line)));
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  child.on('exit', (code) => {
    while (waiting.length) waiting.shift()!(`EXIT ${code} ${stderr}`);
  });
  return { child, next: () => (queue.length ? Promise.resolve(queue.shift()!) : new Promise((resolve) => waiting.push(resolve))) };
}

const exited = (c: Contender) => (c.child.exitCode !== null || c.child.signalCode !== null ? Promise.resolve() : new Promise<void>((resolve) => c.child.once('exit', () => resolve())));

describe('the data-dir lock across processes', () => {
  const started: Contender[] = [];
  afterEach(async () => {
    for (const c of started) c.child.kill('SIGKILL');
    await Promise.all(started.map(exited));
    started.length = 0;
  });

  it('40 simultaneous starts on one data dir with a stale lock give exactly one holder', async () => {
    const lockPath = join(mkdtempSync(join(tmpdir(), 'certfleet-lock-')), 'db.lock');
    // A stale lock, as a process killed with SIGKILL leaves it.
    const crashed = startContender(lockPath);
    expect(await crashed.next()).toBe('READY');
    crashed.child.stdin.write('go\n');
    expect(await crashed.next()).toBe('HELD');
    crashed.child.kill('SIGKILL');
    await exited(crashed);

    const contenders = Array.from({ length: 40 }, () => startContender(lockPath));
    started.push(...contenders);
    for (const c of contenders) expect(await c.next()).toBe('READY');
    for (const c of contenders) c.child.stdin.write('go\n');
    const results = await Promise.all(contenders.map((c) => c.next()));
    expect(results.filter((r) => r !== 'HELD' && r !== 'LOCKED')).toEqual([]);
    expect(results.filter((r) => r === 'HELD')).toHaveLength(1);

    // The holder exits normally: the next start takes the lock; while it holds it, another is refused.
    const holder = contenders[results.indexOf('HELD')];
    holder.child.stdin.end();
    await exited(holder);
    const [next, after] = [startContender(lockPath), startContender(lockPath)];
    started.push(next, after);
    expect(await next.next()).toBe('READY');
    next.child.stdin.write('go\n');
    expect(await next.next()).toBe('HELD');
    expect(await after.next()).toBe('READY');
    after.child.stdin.write('go\n');
    expect(await after.next()).toBe('LOCKED');
  }, scaled(240_000));
});
