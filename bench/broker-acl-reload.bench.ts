/**
 * Broker ACL reload (not a test): how long Mosquitto takes to load the acl_file certfleet writes,
 * with 0 (the peer, same run), 10,000 and 100,000 registered devices (one `user` block each, plus
 * one tenant grant line). Measured as the broker's clients see it: SIGHUP → the admin's next
 * QoS 1 round trip sent once it logged "Reloading config" (it reloads on its one thread, so the round trip waits for the reload),
 * less an ordinary round trip, median of 3; and the start to "running". BENCH_SCALE=small: 0 and 10,000.
 *
 *   node --import tsx bench/broker-acl-reload.bench.ts
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { renderAclFile } from '../src/broker/mosquitto-config.ts';
import { writeBrokerConfig } from '../src/broker/write-broker-config.ts';
import { createDeviceCa } from '../src/pki/device-ca.ts';
import { startMosquitto } from '../test/support/mosquitto.ts';
import { emitTable, round, scaled } from './support/results.ts';

const SIZES = scaled([0, 10_000, 100_000], [0, 10_000]);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function measure(devices: number): Promise<{ startMs: number; reloadMs: number; bytes: number }> {
  const tmp = mkdtempSync(join(tmpdir(), 'certfleet-acl-bench-'));
  chmodSync(tmp, 0o755);
  try {
    const ca = await createDeviceCa({ now: new Date(), commonName: 'acl bench CA' });
    mkdirSync(join(tmp, 'crl'), { mode: 0o755 });
    const crlPath = join(tmp, 'crl', 'crl.pem');
    writeFileSync(join(tmp, 'ca.crt'), ca.certPem);
    writeFileSync(join(tmp, 'ca.key'), ca.keyPem, { mode: 0o600 });
    writeFileSync(join(tmp, 'ca.cnf'), '[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\ncrlnumber = crlnumber\ncertificate = ca.crt\nprivate_key = ca.key\ndefault_md = sha256\ndefault_crl_days = 2\n');
    writeFileSync(join(tmp, 'index.txt'), '');
    writeFileSync(join(tmp, 'crlnumber'), '1000\n');
    execFileSync('openssl', ['ca', '-config', 'ca.cnf', '-gencrl', '-out', crlPath], { cwd: tmp, stdio: 'ignore' });
    chmodSync(crlPath, 0o644);
    const fleet = Array.from({ length: devices }, (_, i) => ({ tenantId: `tenant-${i % 100}`, deviceId: `device-${String(i).padStart(7, '0')}` }));
    const grants = new Map(Array.from({ length: 100 }, (_, t) => [`tenant-${t}`, [{ filter: 'broadcast/#', access: 'read' as const }]]));
    const config = await writeBrokerConfig({ outDir: join(tmp, 'broker'), deviceCaCertPem: ca.certPem, crlPath, dynamicSecurity: { adminPassword: 'bench' }, acl: { devices: fleet, grants } });
    const bytes = Buffer.byteLength(renderAclFile({ adminUsername: 'certfleet-admin', devices: fleet, grants }).text);
    const started = performance.now();
    const broker = await startMosquitto({ configDir: join(tmp, 'broker') });
    const startMs = performance.now() - started;
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.adminPort}`, { username: 'certfleet-admin', password: 'bench', protocolVersion: 5, reconnectPeriod: 0 });
    const roundTrip = async () => {
      const t = performance.now();
      await client.publishAsync('$CONTROL/dynamic-security/v1', '{"commands":[]}', { qos: 1 });
      return performance.now() - t;
    };
    const base: number[] = [];
    const reloads: number[] = [];
    for (let i = 0; i < 3; i++) {
      base.push(await roundTrip());
      const offset = broker.logs().length;
      const t = performance.now();
      process.kill(broker.pid, 'SIGHUP');
      // The reload starts at the broker's next loop turn: a round trip sent before it would not wait for it.
      await broker.waitForLog(/Reloading config/, 600_000, offset);
      await roundTrip();
      reloads.push(performance.now() - t);
    }
    await client.endAsync(true);
    await broker.stop();
    readFileSync(config.files.aclFile);
    return { startMs, reloadMs: Math.max(0, median(reloads) - median(base)), bytes };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

const rows: (string | number)[][] = [];
let peer = 0;
for (const size of SIZES) {
  const r = await measure(size);
  if (size === 0) peer = Math.max(r.reloadMs, 0.1);
  rows.push([size, round(r.bytes / 1e6, 2), round(r.startMs, 0), round(r.reloadMs, 1), round(r.reloadMs / peer, 1)]);
  console.log(`${size} devices: acl_file ${(r.bytes / 1e6).toFixed(2)} MB, start ${r.startMs.toFixed(0)} ms, reload ${r.reloadMs.toFixed(1)} ms`);
}
emitTable({
  id: 'broker-acl-reload',
  title: 'Broker ACL reload',
  description: 'Mosquitto 2.0 loading the acl_file certfleet writes (one user block per registered device, one tenant grant): SIGHUP to the next QoS 1 round trip on the admin listener, less an ordinary round trip, median of 3; start = spawn to "running". Peer: the same broker with no device blocks, same run.',
  columns: ['devices', 'acl_file MB', 'start ms', 'reload ms', 'reload × empty'],
  rows,
});
