/**
 * Test harness: a real Mosquitto on free ports, configured from a folder written by
 * writeBrokerConfig (it re-renders mosquitto.conf from mosquitto-config.json with the ports).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { type MosquittoConfigOptions, renderMosquittoConfig } from '../../src/broker/mosquitto-config.ts';
import { CONFIG_FILE, RENDER_OPTIONS_FILE } from '../../src/broker/broker-files.ts';

export const MOSQUITTO_BIN = process.env.MOSQUITTO_BIN ?? '/usr/sbin/mosquitto';

export interface StartMosquittoOptions {
  configDir: string;
  /** Default: a free port. */
  port?: number;
  /** Default: a free port (only with the dynamic security plugin). */
  adminPort?: number;
  /** Default ['all'] (connections, TLS errors, reloads, dynsec commands). */
  logTypes?: string[];
  /** Default 60 s: a wait for the "running" line, not a delay (it returns as soon as Mosquitto is up). */
  startTimeoutMs?: number;
  /** Run mosquitto.conf exactly as written (ports and log settings from the file, nothing re-rendered). */
  asWritten?: boolean;
  /** More environment for the broker process (e.g. GLIBC_TUNABLES). */
  env?: Record<string, string>;
}

export interface RunningMosquitto {
  port: number;
  adminPort?: number;
  pidFile: string;
  pid: number;
  configFile: string;
  logs(): string;
  /** Resolves when the log matches (counting from `fromOffset` in logs()). */
  waitForLog(pattern: RegExp, timeoutMs?: number, fromOffset?: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A port nobody listens on, for a server a test starts next. Ports come from below the kernel's
 * ephemeral range (32768–60999 here), which outgoing connections and listen(0) draw from: a port
 * taken from that range by listen(0) could be handed to another socket before the broker binds it
 * ("Address already in use" in a clean-clone run). Each vitest worker gets its own block of 1,000
 * ports and walks it in order, so two test files never pick the same port either. Each port
 * handed out keeps the next four unused: `broker-config` puts its admin, recovery and
 * provisioning listeners at the device port + 1, + 2 and + 3 by default.
 */
const PORT_STRIDE = 5;
const PORT_BLOCK = 1000;
const PORT_BASE = 20_000;
const PORT_BLOCKS = 12; // 20000–31999
const poolId = Number(process.env.VITEST_POOL_ID ?? process.env.VITEST_WORKER_ID ?? 0) || 0;
const blockStart = PORT_BASE + (poolId % PORT_BLOCKS) * PORT_BLOCK;
let nextSlot = Math.floor(Math.random() * (PORT_BLOCK / PORT_STRIDE));

/**
 * Every Mosquitto this process started and has not seen exit. A worker runs file after file
 * (vitest `isolate: false`), so a broker that a failing beforeAll never stopped would keep its
 * port and CPU into the next files: test/support/leak-guard.ts stops what a file left running,
 * and the process's exit kills whatever is left.
 */
export const runningBrokers = new Map<ChildProcess, { configFile: string; stop: () => Promise<void> }>();
process.once('exit', () => {
  for (const child of runningBrokers.keys()) child.kill('SIGKILL');
});

function canListen(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  const slots = PORT_BLOCK / PORT_STRIDE;
  for (let tried = 0; tried < slots; tried++) {
    const port = blockStart + (nextSlot++ % slots) * PORT_STRIDE;
    if (await canListen(port, host)) return port;
  }
  throw new Error(`no free port in ${blockStart}–${blockStart + PORT_BLOCK - 1} on ${host}`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startMosquitto(options: StartMosquittoOptions): Promise<RunningMosquitto> {
  const configDir = path.resolve(options.configDir);
  const renderOptions = JSON.parse(await readFile(path.join(configDir, RENDER_OPTIONS_FILE), 'utf8')) as MosquittoConfigOptions;
  const configFile = path.join(configDir, CONFIG_FILE);
  let port: number;
  let adminPort: number | undefined;
  if (options.asWritten) {
    port = renderOptions.port ?? 8883;
    adminPort = renderOptions.dynamicSecurity?.adminPort;
  } else {
    port = options.port ?? (await freePort());
    if (renderOptions.dynamicSecurity) {
      adminPort = options.adminPort ?? (await freePort());
      while (adminPort === port) adminPort = await freePort();
      renderOptions.dynamicSecurity = { ...renderOptions.dynamicSecurity, adminPort };
    }
    renderOptions.port = port;
    renderOptions.logDest = ['stderr'];
    renderOptions.logTypes = options.logTypes ?? ['all'];
    // writeFile keeps the existing file's owner and mode (root:mosquitto 0640 when run as root).
    await writeFile(configFile, renderMosquittoConfig(renderOptions));
  }
  const pidFile = renderOptions.pidFile ?? path.join(configDir, 'run', 'mosquitto.pid');

  let output = '';
  const child: ChildProcess = spawn(MOSQUITTO_BIN, ['-c', configFile], { stdio: ['ignore', 'pipe', 'pipe'], ...(options.env ? { env: { ...process.env, ...options.env } } : {}) });
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  let exited: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  const exitPromise = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      runningBrokers.delete(child);
      resolve();
    });
  });
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));

  const stop = async () => {
    if (exited) return;
    child.kill('SIGTERM');
    const killed = await Promise.race([exitPromise.then(() => true), sleep(5000).then(() => false)]);
    if (!killed) {
      child.kill('SIGKILL');
      await exitPromise;
    }
  };
  runningBrokers.set(child, { configFile, stop });
  child.once('error', () => runningBrokers.delete(child)); // never spawned: nothing to stop

  // Ready means Mosquitto logged "running": it binds its listeners before it loads their
  // certificates and CRL, so an open port or a pid file only says it has begun.
  const configText = await readFile(configFile, 'utf8');
  if (!/^log_dest stderr$/m.test(configText) || !/^log_type (all|information)$/m.test(configText)) {
    throw new Error(`${configFile} must log "information" to stderr: the harness waits for Mosquitto's "running" line`);
  }
  const deadline = Date.now() + (options.startTimeoutMs ?? 60_000);
  for (;;) {
    const early = await Promise.race([spawnError, sleep(0).then(() => null)]);
    if (early) throw new Error(`cannot run ${MOSQUITTO_BIN}: ${early.message}`);
    if (exited) {
      const { code, signal } = exited as { code: number | null; signal: NodeJS.Signals | null };
      throw new Error(`mosquitto exited during start (code ${code}, signal ${signal}):\n${output}`);
    }
    const running = /mosquitto version \S+ running/.test(output);
    const pidReady = await stat(pidFile).then(
      (s) => s.size > 0,
      () => false,
    );
    if (running && pidReady) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`mosquitto did not start within the timeout (running logged: ${running}, pid file ready: ${pidReady}):\n${output}`);
    }
    await sleep(50);
  }

  return {
    port,
    adminPort,
    pidFile,
    pid: child.pid as number,
    configFile,
    logs: () => output,
    async waitForLog(pattern: RegExp, timeoutMs = 30_000, fromOffset = 0) {
      const until = Date.now() + timeoutMs;
      while (!pattern.test(output.slice(fromOffset))) {
        if (Date.now() > until) throw new Error(`mosquitto log did not match ${pattern} within ${timeoutMs} ms:\n${output.slice(fromOffset)}`);
        if (exited) throw new Error(`mosquitto exited while waiting for ${pattern}:\n${output}`);
        await sleep(25);
      }
    },
    stop,
  };
}
