/**
 * Tells Mosquitto to re-read its CRL: SIGHUP to the PID in its pid file, or a configured command
 * (e.g. `docker kill --signal=HUP mqtt`). Call it only after the new CRL file was verified and
 * renamed into place: on a bad or missing file Mosquitto 2.0 fails open.
 *
 * SIGHUP reloads the CRL for new connections only; sessions that are already connected stay open
 * (see src/broker/session-kicker.ts and docs/broker-sessions.md).
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Logger } from '../support/logger.ts';

export class BrokerReloadError extends Error {
  override readonly name = 'BrokerReloadError';
  readonly code = 'BROKER_RELOAD_FAILED';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export interface BrokerReloaderOptions {
  /** Mosquitto's pid_file; read on every reload (never cached). */
  pidFile?: string;
  /** Shell command run with /bin/sh -c instead of signalling (takes precedence over pidFile). */
  command?: string;
  logger?: Logger;
  /** Command timeout. Default 10 s. */
  timeoutMs?: number;
  /**
   * Refuse to signal a PID whose /proc/<pid>/comm is not this (a stale pid file may point at a
   * reused PID, and SIGHUP terminates most programs). Default `mosquitto`; null disables the check.
   */
  expectedProcessName?: string | null;
}

export interface BrokerReloader {
  /** Resolves when the signal was sent / the command succeeded; a no-op when not configured. */
  reload(): Promise<void>;
  readonly configured: boolean;
  /** For logs and the startup banner. */
  readonly description: string;
}

const MAX_OUTPUT = 4096;

function tail(text: string): string {
  const trimmed = text.trim();
  return trimmed.length > MAX_OUTPUT ? `…${trimmed.slice(-MAX_OUTPUT)}` : trimmed;
}

function readPid(pidFile: string): number {
  let text: string;
  try {
    text = readFileSync(pidFile, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new BrokerReloadError(
      code === 'ENOENT'
        ? `broker pid file ${pidFile} does not exist (is Mosquitto running with pid_file ${pidFile}?)`
        : `cannot read broker pid file ${pidFile}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  const trimmed = text.trim();
  if (!/^\d+$/.test(trimmed)) {
    throw new BrokerReloadError(`broker pid file ${pidFile} does not hold a PID (got ${JSON.stringify(trimmed.slice(0, 40))})`);
  }
  const pid = Number(trimmed);
  if (!Number.isSafeInteger(pid) || pid <= 1) {
    throw new BrokerReloadError(`broker pid file ${pidFile} holds an invalid PID ${trimmed}`);
  }
  return pid;
}

function processName(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return ''; // no such process (or no /proc: see below)
    return null;
  }
}

/**
 * Whether the process has installed a SIGHUP handler (bit 0 of SigCgt in /proc/<pid>/status), or
 * null when that cannot be read. Mosquitto writes its pid file before it opens its listeners and
 * sets up its signal handlers: a SIGHUP in between takes the default action and terminates it.
 */
function catchesSighup(pid: number): boolean | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const mask = /^SigCgt:\s*([0-9a-f]+)$/im.exec(status)?.[1];
    return mask === undefined ? null : (BigInt(`0x${mask}`) & 1n) === 1n;
  } catch {
    return null;
  }
}

function hasProcFs(): boolean {
  try {
    readFileSync('/proc/self/comm', 'utf8');
    return true;
  } catch {
    return false;
  }
}

/**
 * Reads the pid file and /proc synchronously (a few bytes each, microseconds): the signal leaves
 * in the same turn of the event loop as the call. Each asynchronous read was a thread-pool round
 * trip waiting for a turn of a main thread that a publication keeps busy meanwhile (the served
 * variant, the store): tens of ms under load between the file's rename and the SIGHUP.
 */
function signalBroker(pidFile: string, expectedName: string | null) {
  return async (): Promise<number> => {
    const pid = readPid(pidFile);
    if (expectedName !== null && hasProcFs()) {
      const name = processName(pid);
      if (name === '') {
        throw new BrokerReloadError(`stale broker pid file ${pidFile}: no process with PID ${pid} (is Mosquitto running?)`);
      }
      if (name !== null && !name.includes(expectedName)) {
        throw new BrokerReloadError(
          `stale broker pid file ${pidFile}: PID ${pid} is "${name}", not ${expectedName}; refusing to send SIGHUP`,
        );
      }
      if (catchesSighup(pid) === false) {
        // Retried like any failed reload; the starting broker reads the current CRL file anyway.
        throw new BrokerReloadError(`broker PID ${pid} is starting (no SIGHUP handler yet); not signalled, the reload is retried`);
      }
    }
    try {
      process.kill(pid, 'SIGHUP');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ESRCH') {
        throw new BrokerReloadError(`stale broker pid file ${pidFile}: no process with PID ${pid} (is Mosquitto running?)`, {
          cause: error,
        });
      }
      if (code === 'EPERM') {
        throw new BrokerReloadError(
          `not allowed to signal the broker (PID ${pid} from ${pidFile}): run certfleet as the broker's user or root, or set BROKER_RELOAD_COMMAND`,
          { cause: error },
        );
      }
      throw new BrokerReloadError(`sending SIGHUP to PID ${pid} failed: ${(error as Error).message}`, { cause: error });
    }
    return pid;
  };
}

function runCommand(command: string, timeoutMs: number) {
  return () =>
    new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
      let stdout = '';
      let stderr = '';
      let timedOut = false;
      let child: ReturnType<typeof spawn>;
      try {
        // detached: own process group, so a timeout kills the whole pipeline.
        child = spawn('/bin/sh', ['-c', command], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      } catch (error) {
        reject(new BrokerReloadError(`broker reload command could not start: ${(error as Error).message}`, { cause: error }));
        return;
      }
      const killGroup = (signal: NodeJS.Signals) => {
        try {
          if (child.pid) process.kill(-child.pid, signal);
        } catch {
          // already gone
        }
      };
      const timer = setTimeout(() => {
        timedOut = true;
        killGroup('SIGTERM');
        setTimeout(() => killGroup('SIGKILL'), 1000).unref();
      }, timeoutMs);
      child.stdout?.on('data', (chunk: Buffer) => {
        stdout = (stdout + chunk.toString()).slice(-MAX_OUTPUT * 2);
      });
      child.stderr?.on('data', (chunk: Buffer) => {
        stderr = (stderr + chunk.toString()).slice(-MAX_OUTPUT * 2);
      });
      child.on('error', (error) => {
        clearTimeout(timer);
        reject(new BrokerReloadError(`broker reload command could not start: ${error.message}`, { cause: error }));
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (timedOut) {
          reject(
            new BrokerReloadError(
              `broker reload command timed out after ${timeoutMs} ms: ${command}${stderr.trim() ? `; stderr: ${tail(stderr)}` : ''}`,
            ),
          );
        } else if (code !== 0) {
          const how = code === null ? `was killed by ${signal}` : `exited with code ${code}`;
          reject(
            new BrokerReloadError(
              `broker reload command ${how}: ${command}${stderr.trim() ? `; stderr: ${tail(stderr)}` : ''}`,
            ),
          );
        } else {
          resolve({ stdout: tail(stdout), stderr: tail(stderr) });
        }
      });
    });
}

export function createBrokerReloader(options: BrokerReloaderOptions = {}): BrokerReloader {
  const pidFile = options.pidFile?.trim() || undefined;
  const command = options.command?.trim() || undefined;
  const log = options.logger;
  const timeoutMs = options.timeoutMs ?? 10_000;

  if (command) {
    if (pidFile) {
      log?.warn({ pidFile, command }, 'both a broker pid file and a reload command are set; using the command');
    }
    const run = runCommand(command, timeoutMs);
    return {
      configured: true,
      description: `command: ${command}`,
      async reload() {
        const started = Date.now();
        const { stdout, stderr } = await run();
        log?.info({ command, ms: Date.now() - started, stdout, stderr }, 'broker reload command succeeded');
      },
    };
  }

  if (pidFile) {
    const signal = signalBroker(pidFile, options.expectedProcessName === undefined ? 'mosquitto' : options.expectedProcessName);
    return {
      configured: true,
      description: `SIGHUP to the PID in ${pidFile}`,
      async reload() {
        const pid = await signal();
        log?.info({ broker_pid: pid, pidFile }, 'sent SIGHUP to the broker');
      },
    };
  }

  return {
    configured: false,
    description: 'not configured (set BROKER_PID_FILE or BROKER_RELOAD_COMMAND)',
    async reload() {},
  };
}
