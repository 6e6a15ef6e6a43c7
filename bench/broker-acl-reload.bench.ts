/**
 * Broker ACL start and reload (not a test): how long Mosquitto 2.0 takes to start and to reload
 * with the files certfleet writes for a fleet of 1,000 / 10,000 / 100,000 registered devices
 * (100 tenants, one tenant grant each), in both modes, measured in the same run:
 *
 * - plugin: the certfleet_acl plugin (broker-plugin/) and its grants file (no device in it);
 * - acl_file: one `user` block per device (capped at ACL_FILE_MAX devices: Mosquitto 2.0.11 parses
 *   it in time quadratic in the blocks, 30,000 took minutes).
 *
 * Reload: SIGHUP → the admin's next QoS 1 round trip sent once the broker logged "Reloading config"
 * (the broker reloads on its one thread, so the round trip waits for the reload), less an ordinary
 * round trip, median of 3. Start: spawn to "running". Publish: the median QoS 1 round trip of a
 * device whose acl_file block is the last one (the broker checks the ACL before its PUBACK), 200
 * round trips. Ratios: acl_file against plugin at the same size.
 *
 *   node --import tsx bench/broker-acl-reload.bench.ts      (BENCH_SCALE=small: 1,000 and 10,000)
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { buildBrokerPlugin } from '../scripts/build-broker-plugin.mjs';
import { writeBrokerConfig } from '../src/broker/write-broker-config.ts';
import { createDeviceCa } from '../src/pki/device-ca.ts';
import { startMosquitto } from '../test/support/mosquitto.ts';
import { tlsOptions } from '../test/support/mqtt-clients.ts';
import { emitTable, ratio, round, scaled } from './support/results.ts';

const SIZES = scaled([1_000, 10_000, 100_000], [1_000, 10_000]);
const ACL_FILE_MAX = Number(process.env.ACL_FILE_MAX ?? 10_000);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pluginPath = buildBrokerPlugin();

interface Measured {
  startMs: number;
  reloadMs: number;
  publishMs: number;
  /** Bytes of the file that grows with the fleet (acl_file) or the grants file (plugin). */
  bytes: number;
}

async function measure(devices: number, mode: 'plugin' | 'acl_file'): Promise<Measured> {
  const tmp = mkdtempSync(join(tmpdir(), `certfleet-acl-bench-${mode}-`));
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
    writeFileSync(join(tmp, 'leaf.ext'), 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
    execFileSync('openssl', ['ca', '-config', 'ca.cnf', '-gencrl', '-out', crlPath], { cwd: tmp, stdio: 'ignore' });
    chmodSync(crlPath, 0o644);
    const fleet = Array.from({ length: devices }, (_, i) => ({ tenantId: `tenant-${i % 100}`, deviceId: `device-${String(i).padStart(7, '0')}` }));
    const grants = new Map(Array.from({ length: 100 }, (_, t) => [`tenant-${t}`, [{ filter: 'broadcast/#', access: 'read' as const }]]));
    const config = await writeBrokerConfig({
      outDir: join(tmp, 'broker'),
      deviceCaCertPem: ca.certPem,
      crlPath,
      dynamicSecurity: { adminPassword: 'bench' },
      acl: { devices: fleet, grants },
      aclPlugin: mode === 'plugin' ? { pluginPath } : undefined,
    });
    const bytes = statSync((mode === 'plugin' ? config.files.grantsFile : config.files.aclFile) as string).size;
    // The device whose acl_file block comes last (the fleet is written in order).
    const last = fleet[fleet.length - 1];
    execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'dev.key', '-out', 'dev.csr', '-subj', `/CN=${last.tenantId}\\/${last.deviceId}`], { cwd: tmp, stdio: 'ignore' });
    execFileSync('openssl', ['x509', '-req', '-in', 'dev.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'leaf.ext', '-out', 'dev.crt'], { cwd: tmp, stdio: 'ignore' });

    const started = performance.now();
    const broker = await startMosquitto({ configDir: join(tmp, 'broker'), startTimeoutMs: 900_000 });
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
    const dev = await mqtt.connectAsync(`mqtts://localhost:${broker.port}`, {
      ...tlsOptions({ port: broker.port, cafile: config.files.combinedCa, cert: join(tmp, 'dev.crt'), key: join(tmp, 'dev.key') }),
      protocolVersion: 5,
      reconnectPeriod: 0,
    });
    const topic = `tenant/${last.tenantId}/device/${last.deviceId}/telemetry`;
    const publishes: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t = performance.now();
      await dev.publishAsync(topic, 'x', { qos: 1 });
      publishes.push(performance.now() - t);
    }
    await dev.endAsync(true);
    await client.endAsync(true);
    await broker.stop();
    return { startMs, reloadMs: Math.max(0, median(reloads) - median(base)), publishMs: median(publishes), bytes };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

const rows: (string | number)[][] = [];
for (const size of SIZES) {
  const plugin = await measure(size, 'plugin');
  console.log(`${size} devices, plugin: grants file ${plugin.bytes} B, start ${plugin.startMs.toFixed(0)} ms, reload ${plugin.reloadMs.toFixed(1)} ms, publish ${plugin.publishMs.toFixed(2)} ms`);
  const file = size <= ACL_FILE_MAX ? await measure(size, 'acl_file') : null;
  if (file) console.log(`${size} devices, acl_file: ${(file.bytes / 1e6).toFixed(2)} MB, start ${file.startMs.toFixed(0)} ms, reload ${file.reloadMs.toFixed(1)} ms, publish ${file.publishMs.toFixed(2)} ms`);
  else console.log(`${size} devices, acl_file: not measured (above ACL_FILE_MAX=${ACL_FILE_MAX}: Mosquitto 2.0.11 parses it in quadratic time)`);
  rows.push([
    size,
    round(plugin.startMs, 0),
    round(plugin.reloadMs, 1),
    round(plugin.publishMs, 2),
    file ? round(file.startMs, 0) : '-',
    file ? round(file.reloadMs, 1) : '-',
    file ? round(file.publishMs, 2) : '-',
    file ? ratio(file.startMs, plugin.startMs) : '-',
    file ? ratio(file.reloadMs, Math.max(plugin.reloadMs, 0.1)) : '-',
  ]);
}
emitTable({
  id: 'broker-acl-reload',
  title: 'Broker ACL: certfleet_acl plugin vs acl_file (start, reload)',
  description:
    'Mosquitto 2.0 with the files certfleet writes for N registered devices (100 tenants, one grant each), same run: the certfleet_acl plugin (grants file only) and the acl_file (one user block per device, measured up to ' +
    `${ACL_FILE_MAX} devices). Start = spawn to "running"; reload = SIGHUP to the admin's next QoS 1 round trip, less an ordinary one, median of 3; publish = median QoS 1 round trip of the device whose acl_file block is last (200).`,
  columns: ['devices', 'plugin start ms', 'plugin reload ms', 'plugin publish ms', 'acl_file start ms', 'acl_file reload ms', 'acl_file publish ms', 'start acl_file/plugin', 'reload acl_file/plugin'],
  rows,
});
