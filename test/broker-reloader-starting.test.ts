/**
 * A broker that is starting (its pid file written, its SIGHUP handler not installed yet: Mosquitto
 * writes the pid file before it opens its listeners and sets up its signals) must not be sent
 * SIGHUP, whose default action terminates it. Real processes: one without a SIGHUP handler, one
 * with it; the reloader reads /proc/<pid>/status (SigCgt).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerReloadError, createBrokerReloader } from '../src/broker/broker-reloader.ts';

const haveProc = process.platform === 'linux';
let tmp: string;
const children: ChildProcess[] = [];

/** A shell that reports when it is ready (after its trap is set, if any) and then waits. */
async function startShell(script: string): Promise<ChildProcess> {
  const child = spawn('/bin/sh', ['-c', `${script}\necho ready\nwhile :; do sleep 1; done`], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    child.once('exit', (code, signal) => reject(new Error(`shell exited early (${code ?? signal})`)));
  });
  return child;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'certfleet-reloader-'));
});
afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await rm(tmp, { recursive: true, force: true });
});

describe.runIf(haveProc)(`broker reload while the broker is starting${haveProc ? '' : ' (skipped: needs Linux /proc)'}`, () => {
  it('does not signal a process that has no SIGHUP handler yet (it would die); reports it as retryable', async () => {
    const starting = await startShell(':');
    const pidFile = path.join(tmp, 'starting.pid');
    await writeFile(pidFile, `${starting.pid}\n`);
    const reloader = createBrokerReloader({ pidFile, expectedProcessName: 'sh' });
    const error = await reloader.reload().then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(BrokerReloadError);
    expect((error as Error).message).toMatch(/starting|no SIGHUP handler/);
    expect(alive(starting.pid!)).toBe(true);
    expect(starting.exitCode).toBe(null);
    expect(starting.signalCode).toBe(null);
  });

  it('signals a process that handles SIGHUP', async () => {
    const ready = await startShell(`trap 'echo hup' HUP`);
    const pidFile = path.join(tmp, 'ready.pid');
    await writeFile(pidFile, `${ready.pid}\n`);
    const hup = new Promise<void>((resolve) => ready.stdout!.on('data', (d: Buffer) => d.toString().includes('hup') && resolve()));
    await createBrokerReloader({ pidFile, expectedProcessName: 'sh' }).reload();
    await hup;
    expect(alive(ready.pid!)).toBe(true);
  });
});
