/**
 * CA rollover of a fleet through a real Mosquitto (not a test; the proof is test/ca-rollover.test.ts):
 * BENCH_ROLLOVER_FLEET devices (200; BENCH_SCALE=small: 50) reconnect without pause during the
 * whole run (TLS handshake + MQTT CONNECT, 4 at a time), and every attempt is counted.
 *
 * Peer, same run, same devices, same path: every device renews over EST under CA1 (no CA change),
 * then CA2 is staged (waited for in the broker's files), activated, every device renews again
 * (migrates to CA2), and CA1 is retired. Devices renewed (migrated) per second over EST, 4 at a
 * time, each renewal = new key on the device, simplereenroll, switch, a first use that confirms it.
 *
 *   node --import tsx bench/rollover.bench.ts      (or npm run bench, BENCH_ONLY=rollover)
 */
import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import * as x509 from '@peculiar/x509';
import { scaled as testScaled } from '../test/support/timeouts.ts';
import {
  brokerCovers,
  credentialFrom,
  inParallel,
  renewAndConfirm,
  startHandshakeLoop,
  startRolloverRig,
  waitForBrokerTrust,
  type FleetDevice,
} from '../test/support/rollover.ts';
import { emitTable, ratio, round, scaled } from './support/results.ts';

const FLEET = Number(process.env.BENCH_ROLLOVER_FLEET) || scaled(200, 50);
const TENANT = 'bench-rollover';
const CAS = '/api/v1/operator/cas';
const RENEWALS_IN_FLIGHT = 4;

async function main() {
  const rig = await startRolloverRig('bench-rollover');
  const { t, broker, estUrl, combinedCa, trustFiles, port } = rig;
  const call = async (method: string, url: string, body?: unknown, tenant: string | null = null) => {
    const res = await t.call(tenant, method, url, body, tenant ? 'tenant-admin' : 'operator-admin');
    if (res.status >= 300) throw new Error(`${method} ${url}: ${res.status} ${res.body}`);
    return res.json;
  };
  const loads: number[] = [loadavg()[0]];
  try {
    const devices: FleetDevice[] = [];
    const issueStarted = performance.now();
    for (let i = 0; i < FLEET; i++) {
      const id = `bench-${String(i).padStart(5, '0')}`;
      await call('POST', '/api/v1/customer/devices', { device_id: id }, TENANT);
      const res = await call('POST', `/api/v1/customer/devices/${id}/certificates/generate`, { key_type: 'ec-p256' }, TENANT);
      devices.push({ id, current: credentialFrom(res.cert_pem, res.private_key_pem, res.certificate.id), inflight: new Map() });
    }
    const issuedPerSecond = FLEET / ((performance.now() - issueStarted) / 1000);
    const loop = startHandshakeLoop({ port, caPem: combinedCa, devices, concurrency: 4, initialPhase: 'CA1', timeoutMs: 60_000 });
    await loop.fleetSeenAfter(testScaled(300_000));

    const renewAll = async () => {
      const started = performance.now();
      await inParallel(devices, RENEWALS_IN_FLIGHT, async (d) => void (await renewAndConfirm(estUrl, combinedCa, loop, d)));
      return FLEET / ((performance.now() - started) / 1000);
    };
    // Peer: the same renewals with no CA change.
    loop.phase = 'renew under CA1';
    const baseline = await renewAll();
    loads.push(loadavg()[0]);
    console.log(`${FLEET} devices renewed under CA1 over EST: ${baseline.toFixed(1)} devices/s`);

    loop.phase = 'CA2 staged';
    const since = broker.logs().length;
    const stageStarted = performance.now();
    const created = await call('POST', CAS, { key_type: 'ec-p256' });
    const ca2 = (created.ca ?? created) as { id: string };
    const ca2Cert = new x509.X509Certificate((await t.service.app.inject({ method: 'GET', url: `/pki/ca/${ca2.id}.pem` })).body);
    await waitForBrokerTrust(broker, trustFiles, since, async (trust) => {
      const c = await brokerCovers(trust, ca2Cert);
      return c.inCafile && c.crl;
    }, 'CA2 in the broker files', 120_000);
    const stagedMs = performance.now() - stageStarted;
    await loop.fleetSeenAfter(testScaled(300_000));

    loop.phase = 'CA2 active, fleet migrates';
    await call('POST', `${CAS}/${ca2.id}/activate`, {});
    const ca1 = ((await call('GET', CAS)).cas as Array<{ id: string; status: string }>).find((c) => c.status === 'retiring')!;
    const migrated = await renewAll();
    loads.push(loadavg()[0]);
    console.log(`${FLEET} devices migrated to CA2 over EST: ${migrated.toFixed(1)} devices/s`);
    await loop.fleetSeenAfter(testScaled(300_000));

    loop.phase = 'CA1 retired';
    const retireSince = broker.logs().length;
    const retireStarted = performance.now();
    await call('POST', `${CAS}/${ca1.id}/retire`, {});
    const ca1Cert = new x509.X509Certificate(readFileSync(rig.env.DEVICE_CA_CERT_PATH, 'utf8'));
    await waitForBrokerTrust(broker, trustFiles, retireSince, async (trust) => {
      const c = await brokerCovers(trust, ca1Cert);
      return !c.inCafile && !c.crl;
    }, 'CA1 out of the broker files', 120_000);
    const retiredMs = performance.now() - retireStarted;
    await loop.fleetSeenAfter(testScaled(300_000));
    await loop.stop();

    let attempts = 0;
    let accepted = 0;
    let refused = 0;
    for (const c of loop.counts.values()) {
      attempts += c.validAttempts;
      accepted += c.validAccepted;
      refused += c.validRefused;
    }
    const load = Math.max(...loads);
    emitTable({
      id: 'rollover',
      title: 'CA rollover of a connected fleet (real Mosquitto)',
      description:
        'Every device has its own key and certificate under CA1 and reconnects without pause during the whole run (TLS handshake + MQTT CONNECT to a real Mosquitto configured by `certfleet broker-config` and reloaded by certfleet, 4 connections at a time). ' +
        `Peer in the same run: the same devices renew over EST under CA1 (no CA change). Then CA2 is staged (\`POST /api/v1/operator/cas\`) until the broker's cafile and crlfile hold it and it reloaded, activated, every device renews over EST again (new key on the device, \`simplereenroll\`, first use confirms, the CA1 certificate revoked), and CA1 is retired. ${RENEWALS_IN_FLIGHT} renewals in flight; certfleet on Postgres, 2 shared cores.`,
      columns: ['fleet', 'issued/s (API generate)', 'renewed/s under CA1 (peer)', 'migrated/s to CA2', 'migration vs peer', 'stage → broker ready ms', 'retire → broker dropped CA1 ms', 'handshakes of valid devices', 'refused (target 0)', 'load avg max'],
      rows: [[FLEET, round(issuedPerSecond, 2), round(baseline, 2), round(migrated, 2), ratio(migrated, baseline), round(stagedMs, 0), round(retiredMs, 0), attempts, refused, round(load)]],
      notes: [
        `${accepted} of ${attempts} handshakes accepted; refusals of valid devices: ${refused}${loop.failures.length ? ` (${JSON.stringify(loop.failures.slice(0, 3))})` : ''}.`,
        'migration vs peer: migrated/s divided by renewed/s under CA1 (1x: moving to a new CA costs a device what any renewal costs).',
      ],
    });
    if (refused > 0) process.exitCode = 1;
  } finally {
    await rig.close();
  }
}

await main();
