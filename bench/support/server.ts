import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { createWriteStream, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createThrowawayDatabase } from '../../test/support/databases.ts';

const BIN = join(import.meta.dirname, '..', '..', 'test', 'support', 'certfleet-source.js');

/** A throw-away Postgres database for one benchmark run. */
export const benchDatabase = () => createThrowawayDatabase('certfleet_bench');

export function cli(args: string[], env: Record<string, string>): string {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
  if (r.status !== 0) throw new Error(`certfleet ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

/** `certfleet <command>` in a child process on real Postgres with its own CA; resolves once it listens. */
/**
 * A port for a server of the bench: below Linux's ephemeral range (32768-60999, where the machine's
 * outgoing connections take theirs: a random port up to 40000 collided with one now and then, and
 * the server could not listen), and free when asked (a probe binds it).
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const free = await new Promise<boolean>((resolve) => {
      const probe = net.createServer();
      probe.once('error', () => resolve(false));
      probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
    });
    if (free) return port;
  }
}

export async function startServer(command: 'api' | 'serve' | 'worker', databaseUrl: string, extraEnv: Record<string, string> = {}, nodeArgs: string[] = []) {
  const dataDir = mkdtempSync(join(tmpdir(), 'certfleet-bench-'));
  cli(['init-ca', '--out', join(dataDir, 'ca')], {});
  const port = await freePort();
  const env: Record<string, string> = {
    CERTFLEET_DATA_DIR: dataDir,
    DATABASE_URL: databaseUrl,
    CERTFLEET_AUTH: 'development', // the benchmark mints development tokens
    DEVICE_CA_CERT_PATH: join(dataDir, 'ca', 'device-ca.crt'),
    DEVICE_CA_KEY_PATH: join(dataDir, 'ca', 'device-ca.key'),
    PORT: String(port),
    LOG_LEVEL: 'warn',
    ...extraEnv,
  };
  // BENCH_CERTFLEET_BIN: another build's CLI (an A/B run against an earlier commit's checkout).
  const child: ChildProcess = spawn(process.execPath, [...nodeArgs, process.env.BENCH_CERTFLEET_BIN ?? BIN, command], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  // Ready when /healthz answers (the start banner is a log line LOG_LEVEL=warn hides).
  let out = '';
  let exited: number | null | undefined;
  child.stdout!.on('data', (d) => (out += d));
  // BENCH_SERVER_LOG_FILE: the server's log lines (with BENCH_SERVER_LOG_LEVEL or LOG_LEVEL=info) go to this file too.
  if (process.env.BENCH_SERVER_LOG_FILE) child.stdout!.pipe(createWriteStream(process.env.BENCH_SERVER_LOG_FILE, { flags: 'a' }));
  child.once('exit', (code) => (exited = code));
  for (;;) {
    if (exited !== undefined) throw new Error(`server exited (${exited}): ${out}`);
    const ok = await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false);
    if (ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    base: `http://127.0.0.1:${port}`,
    env,
    dataDir,
    pid: child.pid!,
    token: (tenant: string) => cli(['token', '--tenant', tenant, '--ttl', '2h'], env),
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

export const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
export const fmt = (n: number, digits = 1) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

/**
 * A keep-alive agent that closes idle sockets (4 s) before the server does (HTTP_KEEP_ALIVE_TIMEOUT_MS, 5 s):
 * otherwise a request can go out on a socket the server is closing at that moment and fail
 * with a reset, which counts as an error of the client, not of certfleet.
 */
export const keepAliveAgent = (maxSockets: number) => new http.Agent({ keepAlive: true, maxSockets, timeout: 4000 });

/** One request over a keep-alive agent (node:http: much lighter than fetch, so the server gets the CPU); resolves to the status, 0 on a network error. */
export function requestStatus(agent: http.Agent, method: 'GET' | 'POST', url: string, headers: Record<string, string>, body?: string): Promise<number> {
  return new Promise((resolve) => {
    const sent = body === undefined ? headers : { ...headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) };
    const req = http.request(url, { method, agent, headers: sent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(0));
    });
    req.on('error', () => resolve(0));
    req.end(body);
  });
}

export interface BenchRequest {
  method: 'GET' | 'POST';
  url: string;
  headers: Record<string, string>;
  body?: string;
}

/** Closed loop: `concurrency` keep-alive requests in flight for `seconds`; request(i) gives the i-th request. */
export async function closedLoop(request: (i: number) => BenchRequest, ok: number, seconds: number, concurrency: number) {
  const agent = keepAliveAgent(concurrency);
  const latencies: number[] = [];
  let errors = 0;
  let i = 0;
  const until = Date.now() + seconds * 1000;
  const start = performance.now();
  const worker = async () => {
    while (Date.now() < until) {
      const r = request(i++);
      const t0 = performance.now();
      if ((await requestStatus(agent, r.method, r.url, r.headers, r.body)) === ok) latencies.push(performance.now() - t0);
      else errors++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (performance.now() - start) / 1000;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  return { rate: latencies.length / elapsed, p50: percentile(latencies, 50), p99: percentile(latencies, 99), count: latencies.length, errors };
}
