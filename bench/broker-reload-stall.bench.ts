/**
 * The stall of a Mosquitto CRL reload (not a test): Mosquitto re-reads its whole `crlfile` on
 * SIGHUP on its one thread and serves nobody meanwhile. A connected MQTT client publishes QoS 1
 * messages one after the other and times each PUBLISH → PUBACK round trip; the broker is
 * signalled once the client runs, and the round trips are recorded until the reload is logged
 * done plus 200 more. Compared with the same client's round trips without a reload (the peer in
 * the same run). At 0, 100,000 and 1,000,000 listed entries (BENCH_SCALE=small: 0 and 10,000;
 * BENCH_STALL_SIZES=0,100000 for a list of your own). CRL layout: broker-config's default, capath
 * (BENCH_BROKER_CRL_LAYOUT=crlfile for the single crlfile): there the reload reads only the
 * placeholder and the CRL is loaded at the next handshake, so a second device connects as soon as
 * the reload is logged (a device reconnecting after it) and its handshake's CRL load, on the same
 * thread, is inside the measured window.
 *
 *   node --import tsx bench/broker-reload-stall.bench.ts      (or npm run bench)
 */
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { brokerTestFixture, closeBrokerTest, runBrokerConfig } from '../test/support/broker-fixture.ts';
import { insertRevokedCertificates } from '../test/support/bulk-revoked.ts';
import { freePort, startMosquitto } from '../test/support/mosquitto.ts';
import { tlsOptions } from '../test/support/mqtt-clients.ts';
import { startTestService } from '../test/support/service.ts';
import { createLogger } from '../src/support/logger.ts';
import { emitTable, round, scaled } from './support/results.ts';
import { percentile } from './support/server.ts';

const SIZES = process.env.BENCH_STALL_SIZES ? process.env.BENCH_STALL_SIZES.split(',').map(Number) : scaled([0, 100_000, 1_000_000], [0, 10_000]);
const TENANT = 'bench';
const LAYOUT = process.env.BENCH_BROKER_CRL_LAYOUT === 'crlfile' ? 'crlfile' : 'capath';


async function roundTrips(client: mqtt.MqttClient, until: () => boolean, min: number, out: number[] = []): Promise<number[]> {
  while (out.length < min || !until()) {
    const started = performance.now();
    await client.publishAsync('tenant/bench/device/STALL-1/rtt', 'x', { qos: 1 });
    out.push(performance.now() - started);
  }
  return out;
}

async function measureSize(entries: number) {
  const fixture = await brokerTestFixture('stall');
  const { tmp, database } = fixture;
  let broker: Awaited<ReturnType<typeof startMosquitto>> | undefined;
  let service: Awaited<ReturnType<typeof startTestService>> | undefined;
  try {
    if (entries) await insertRevokedCertificates(database.driver, { count: entries, now: new Date(), devices: Math.min(10_000, entries), issuer: 'certfleet stall Device CA' });
    const port = await freePort();
    const brokerConfig = runBrokerConfig(fixture.env, join(tmp, 'broker'), ['--port', String(port), '--no-kick', '--crl-layout', LAYOUT], 900_000); // a 1M-entry CRL on a loaded host takes minutes
    broker = await startMosquitto({ configDir: join(tmp, 'broker'), asWritten: true, startTimeoutMs: 300_000 });
    service = await startTestService(database, { dataDir: join(tmp, 'data'), env: fixture.env, overrides: { logger: createLogger({ level: 'warn', destination: { write: () => undefined } }) } });
    await service.call(TENANT, 'POST', '/customer/devices', { device_id: 'STALL-1' });
    const r = await service.call(TENANT, 'POST', '/customer/devices/STALL-1/certificates/generate', { key_type: 'ec-p256' });
    const cert = join(tmp, 'certs', 'stall.crt');
    const key = join(tmp, 'certs', 'stall.key');
    writeFileSync(cert, r.json.cert_pem);
    writeFileSync(key, r.json.private_key_pem, { mode: 0o600 });
    const client = await mqtt.connectAsync(`mqtts://localhost:${port}`, { ...tlsOptions({ port, cafile: brokerConfig.files.combinedCa, cert, key }), protocolVersion: 4, reconnectPeriod: 0, keepalive: 600 }); // keepalive: a long stall on a loaded host must not end the session
    const loadStart = loadavg()[0]!;
    try {
      const quiet = (await roundTrips(client, () => true, 500)).sort((a, b) => a - b);
      // Mosquitto logs every publish (log_type all): scan only what is new, once per round trip.
      let scanned = broker.logs().length;
      let reloadedAt = -1;
      const during: number[] = [];
      let reconnect: Promise<unknown> | null = null;
      const done = () => {
        if (reloadedAt < 0) {
          const logs = broker!.logs();
          if (logs.indexOf('Reloading config.', Math.max(0, scanned - 20)) >= 0) {
            reloadedAt = during.length;
            // capath: the CRL is loaded at the first handshake after the reload, by this device's.
            if (LAYOUT === 'capath') {
              reconnect = mqtt
                .connectAsync(`mqtts://localhost:${port}`, { ...tlsOptions({ port, cafile: brokerConfig.files.combinedCa, cert, key }), protocolVersion: 4, reconnectPeriod: 0, clientId: 'stall-reconnect', connectTimeout: 300_000 }, false)
                .then((c) => c.endAsync(true));
            }
          }
          scanned = logs.length;
        }
        return reloadedAt >= 0 && during.length >= reloadedAt + 200;
      };
      const signalled = performance.now();
      process.kill(broker.pid, 'SIGHUP');
      await roundTrips(client, done, 50, during);
      if (reconnect) {
        await reconnect;
        await roundTrips(client, () => true, 50, during); // after the handshake's load
      }
      const elapsed = performance.now() - signalled;
      const sorted = [...during].sort((a, b) => a - b);
      console.log(`${entries.toLocaleString('en-US')} entries (${LAYOUT}): quiet p99 ${percentile(quiet, 99).toFixed(1)} ms; during the reload p99 ${percentile(sorted, 99).toFixed(1)} ms, max ${sorted.at(-1)!.toFixed(0)} ms; load ${loadavg()[0]!.toFixed(1)}`);
      return { load: [loadStart, loadavg()[0]!] as const, entries, quietP99: percentile(quiet, 99), p99: percentile(sorted, 99), max: sorted[sorted.length - 1]!, quietP50: percentile(quiet, 50), window: elapsed };
    } finally {
      await client.endAsync(true);
    }
  } finally {
    await closeBrokerTest({ service, broker, database, tmp });
  }
}

export async function runBrokerReloadStallBench() {
  const rows = [];
  for (const size of SIZES) {
    const m = await measureSize(size);
    rows.push([size, round(m.quietP50, 2), round(m.quietP99, 2), round(m.p99, 1), round(m.max, 0), round(m.max / m.quietP99, 0), `${m.load[0].toFixed(1)}–${m.load[1].toFixed(1)}`]);
  }
  emitTable({
    id: 'broker-reload-stall',
    title: 'Mosquitto CRL reload: the stall a connected client sees',
    description:
      'A connected MQTT 3.1.1 client publishes QoS 1 messages back to back (PUBLISH → PUBACK round trip; with 3.1.1 Mosquitto acknowledges whether or not its ACL admits the topic, and either way the message passes its one thread). The peer: the same client with no reload. ' +
      'Then SIGHUP, round trips recorded until the reload is logged plus 200 more: their p99 and max (the stall). Real Mosquitto, CRL from certfleet. ' +
      `CRL layout ${LAYOUT}${LAYOUT === 'capath' ? ' (a second device connects once the reload is logged: its handshake loads the CRL on the broker\'s thread, inside the window)' : ''}.`,
    columns: ['entries listed', 'quiet p50 ms', 'quiet p99 ms', 'during reload p99 ms', 'during reload max ms (stall)', 'max / quiet p99', 'load average (1 min), start–end'],
    rows,
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runBrokerReloadStallBench();
}
