/**
 * Revocation → new CRL file on disk at 100k and 1M listed (not a test), real Postgres:
 *
 *   node --import tsx bench/crl-incremental.bench.ts      (or npm run bench)
 *
 * `certfleet serve` on Postgres over N revoked certificates, then lone revocations over HTTP;
 * the time from the revoke response (committed) until the CRL file was replaced (stat polled
 * every millisecond; afterwards, untimed, the new file is checked to list the serial).
 * Peers, same run, same data:
 * - the same server with CRL_FULL_REBUILD_MINUTES=0: every publication reads every entry from
 *   the database (what every revocation cost before incremental publication);
 * - the floor: hashing the CRL once (SHA-256 over its DER) and writing its PEM file the way the
 *   publisher does (temp file, fsync, rename, fsync of the folder), in this process.
 * BENCH_INCREMENTAL_SIZES (comma-separated) picks the sizes; BENCH_INCREMENTAL_REVOCATIONS the count.
 * The machine's 1-minute load average is recorded with each row (a shared 2-core machine).
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, statSync, writeSync } from 'node:fs';
import http from 'node:http';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { crlPemToDer } from '../src/crl/verify-crl.ts';
import { migrate } from '../src/storage/migrate.ts';
import { createPgDriver } from '../src/storage/pg-driver.ts';
import { insertRevokedCertificates } from '../test/support/bulk-revoked.ts';
import { benchDatabase, percentile, startServer } from './support/server.ts';
import { emitTable, round, scaled } from './support/results.ts';

const list = (v: string | undefined) => (v === undefined ? undefined : v.split(',').filter(Boolean).map(Number));
/** Until a process's CPU time stops growing for 300 ms (three 100 ms samples): no publication, store or commit runs. */
async function serverIdle(pid: number): Promise<void> {
  for (let last = cpuMsOf(pid), still = 0; still < 3; ) {
    await new Promise((r) => setTimeout(r, 100));
    const now = cpuMsOf(pid);
    still = now === last ? still + 1 : 0;
    last = now;
  }
}
const SIZES = list(process.env.BENCH_INCREMENTAL_SIZES) ?? scaled([100_000, 1_000_000], [10_000]);
const REVOCATIONS = Number(process.env.BENCH_INCREMENTAL_REVOCATIONS ?? scaled(20, 5));

function request(method: string, url: string, token: string, body?: unknown): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(url, { method, headers: { authorization: `Bearer ${token}`, ...(data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {}) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: text ? JSON.parse(text) : null }));
    });
    req.on('error', reject);
    req.end(data);
  });
}

/** DER INTEGER of a hex serial: what the CRL entry contains. */
function serialBytes(hex: string): Buffer {
  const even = hex.length % 2 ? `0${hex}` : hex;
  const b = Buffer.from(even, 'hex');
  return b[0] & 0x80 ? Buffer.concat([Buffer.from([0x02, b.length + 1, 0]), b]) : Buffer.concat([Buffer.from([0x02, b.length]), b]);
}

const identity = (path: string) => {
  const s = statSync(path, { bigint: true });
  return `${s.ino}:${s.mtimeNs}:${s.size}`;
};

/** CPU time (user + system, ms) a process has used so far (/proc/PID/stat; 10 ms steps); NaN when gone. */
function cpuMsOf(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime + stime in clock ticks (100 Hz)
  } catch {
    return Number.NaN;
  }
}

/** p50/p99 of revocation → file replaced on a running server over the database `url`. */
async function revocationsToFile(url: string, fullRebuild: boolean, revocations: number) {
  // BENCH_SERVER_NODE_ARGS (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`): profile the server; BENCH_SERVER_LOG_LEVEL=info shows its crl_published timings.
  const nodeArgs = process.env.BENCH_SERVER_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const server = await startServer('serve', url, { LOG_LEVEL: process.env.BENCH_SERVER_LOG_LEVEL ?? 'warn', ...(fullRebuild ? { CRL_FULL_REBUILD_MINUTES: '0' } : {}) }, nodeArgs);
  const crlPath = join(server.dataDir, 'pki', 'device-crl.pem');
  try {
    const token = server.token('bench');
    const device = `INC-${fullRebuild ? 'F' : 'I'}`;
    if ((await request('POST', `${server.base}/api/v1/customer/devices`, token, { device_id: device })).status !== 201) throw new Error('device registration failed');
    const certs: [string, string][] = [];
    for (let i = 0; i < revocations + 1; i++) {
      const r = await request('POST', `${server.base}/api/v1/customer/devices/${device}/certificates/generate`, token, { key_type: 'ec-p256', validity_days: 30 });
      certs.push([String(r.json.certificate.id), r.json.certificate.serial_number]);
    }
    // The server's first publication (a full read) must be on disk before the first revocation.
    for (const started = performance.now(); !existsSync(crlPath); await new Promise((r) => setTimeout(r, 10))) {
      if (performance.now() - started > 1_800_000) throw new Error('no CRL file 30 min after the start');
    }
    const times: number[] = [];
    const loads: number[] = [];
    // The server's CPU time over the timed revocations (each waited for until the file stopped changing: the whole publication).
    let cpuStart = Number.NaN;
    for (const [n, [id, serial]] of certs.entries()) {
      // Wait until no publication runs: each revocation is a lone one (the first warms up the process: not counted).
      // The file stops changing first; the publication's store and commit come after it (about 2.5 s at
      // 1M listed on this machine), so also until the server is idle (its CPU time still for 300 ms):
      // without that, a revocation at 1M queued behind the previous one's store.
      let before = identity(crlPath);
      for (let quiet = 0; quiet < 300; ) {
        await new Promise((r) => setTimeout(r, 1));
        const now = identity(crlPath);
        quiet = now === before ? quiet + 1 : 0;
        before = now;
      }
      await serverIdle(server.pid);
      before = identity(crlPath);
      if (n === 1) cpuStart = cpuMsOf(server.pid);
      const res = await request('POST', `${server.base}/api/v1/customer/certificates/${id}/revoke`, token, { reason: 'keyCompromise' });
      const t1 = performance.now();
      if (res.status !== 200) throw new Error(`revoke failed: ${res.status}`);
      // Until the file lists the serial: a publication that began before the revocation (the start-up's
      // second one on a loaded machine) may replace the file first; its time runs on (untimed check).
      let t2 = 0;
      for (let seen = before; ; ) {
        while (identity(crlPath) === seen) {
          if (performance.now() - t1 > 900_000) throw new Error('the CRL file did not change within 15 min');
          await new Promise((r) => setTimeout(r, 1));
        }
        t2 = performance.now();
        seen = identity(crlPath);
        if (crlPemToDer(readFileSync(crlPath, 'latin1')).includes(serialBytes(serial))) break;
        console.log(`(a CRL file without ${serial} replaced the file ${Math.round(t2 - t1)} ms after the revocation: a publication begun before it)`);
      }
      if (n > 0) {
        times.push(t2 - t1);
        loads.push(loadavg()[0]);
      }
    }
    // The last publication's store and commit come after its file: wait until the server is idle.
    await serverIdle(server.pid);
    const cpuPerRevocation = (cpuMsOf(server.pid) - cpuStart) / times.length;
    times.sort((a, b) => a - b);
    const der = crlPemToDer(readFileSync(crlPath, 'latin1'));
    return { p50: percentile(times, 50), p99: percentile(times, 99), max: times.at(-1)!, der, load: loads.reduce((a, b) => a + b, 0) / loads.length, cpu: cpuPerRevocation };
  } finally {
    await server.stop();
  }
}

/** The floor: SHA-256 over the DER once, and its PEM file written as the publisher writes it. Median of 5. */
function floorMs(der: Buffer, dir: string) {
  const pem = Buffer.from(`-----BEGIN X509 CRL-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END X509 CRL-----\n`, 'latin1');
  const hash: number[] = [];
  const write: number[] = [];
  for (let i = 0; i < 5; i++) {
    let t = performance.now();
    createHash('sha256').update(der).digest();
    hash.push(performance.now() - t);
    t = performance.now();
    const tmp = join(dir, `.floor.${i}.tmp`);
    const fd = openSync(tmp, 'w');
    writeSync(fd, pem);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, join(dir, 'floor.pem'));
    const d = openSync(dir, 'r');
    fsyncSync(d);
    closeSync(d);
    write.push(performance.now() - t);
  }
  const med = (a: number[]) => a.sort((x, y) => x - y)[2];
  return { hash: med(hash), write: med(write) };
}

const rows: (string | number)[][] = [];
for (const size of SIZES) {
  const database = await benchDatabase();
  try {
    const driver = createPgDriver(database.url, { max: 1 });
    await migrate(driver);
    await insertRevokedCertificates(driver, { count: size, now: new Date(), issuer: 'certfleet Device CA' });
    await driver.pool.query('VACUUM ANALYZE device_certificates');
    await driver.close();
    const incremental = await revocationsToFile(database.url, false, REVOCATIONS);
    // BENCH_INCREMENTAL_PEER=0: skip the full-read peer (profiling runs only; the table then has no peer).
    const full = process.env.BENCH_INCREMENTAL_PEER === '0' ? { p50: NaN, load: NaN, cpu: NaN } : await revocationsToFile(database.url, true, Math.max(3, Math.floor(REVOCATIONS / (size >= 1_000_000 ? 4 : 1))));
    const { mkdtempSync, rmSync } = await import('node:fs');
    const dir = mkdtempSync(join((await import('node:os')).tmpdir(), 'crl-floor-'));
    const floor = floorMs(incremental.der, dir);
    rmSync(dir, { recursive: true, force: true });
    const row = [
      size,
      round(incremental.der.length / 1e6, 1),
      round(incremental.p50),
      round(incremental.p99),
      round(full.p50),
      round(full.p50 / incremental.p50, 1),
      round(floor.hash),
      round(floor.write),
      round(incremental.p50 / (floor.hash + floor.write), 1),
      `${round(incremental.load)} / ${round(full.load)}`,
      `${round(incremental.cpu)} / ${round(full.cpu)}`,
    ];
    console.log(row.join(' | '));
    rows.push(row);
  } finally {
    await database.drop();
  }
}
emitTable({
  id: 'revocation-to-file-incremental',
  title: 'Revocation → new CRL file on disk, incremental (100k and 1M listed)',
  description:
    '`certfleet serve` on Postgres (analyzed) over N revoked certificates; lone revocations over HTTP, timed from the revoke response (committed) until the CRL file was replaced (then checked to list the serial). ' +
    'Peers, same run, same data: the same server with `CRL_FULL_REBUILD_MINUTES=0` (every publication reads every entry: the cost before), and the floor measured in the bench process: SHA-256 once over the CRL and writing its PEM file as the publisher does (temp file, fsync, rename, fsync of the folder), median of 5. ' +
    'Load: the 1-minute load average during the incremental / full runs (2 shared cores). Server CPU: the `certfleet serve` process\'s user + system CPU time per revocation (/proc, whole publications including the store), incremental / full.',
  columns: ['listed', 'CRL MB', 'incremental p50 ms', 'incremental p99 ms', 'full read p50 ms (peer)', 'full / incremental', 'floor: hash ms', 'floor: write file ms', 'incremental / floor', 'load avg', 'server CPU ms per revocation'],
  rows,
});
