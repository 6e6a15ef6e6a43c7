/**
 * Renewal storm at full size (issue 21.5), not a test: BENCH_STORM_DEVICES devices (default
 * 10,000; BENCH_SCALE=small 1,000) of two tenants (90% / 10%), a third renewing over MQTT
 * through a real Mosquitto (broker-config --mqtt-renewal), the rest over EST (Node TLS with the
 * device certificate), each with a CSR for a new key, all starting within BENCH_STORM_SPREAD_MS
 * (default one minute; small 10 s). Devices obey 503 + Retry-After / retry_after_seconds. Every
 * tenth device asks again after its answer (a lost answer) and must get the same certificate.
 * Afterwards every device must have exactly two certificates (old, new) and one rotation.
 *
 * Run twice on real Postgres, in the same process: certfleet's admission (the defaults:
 * RENEWAL_MAX_CONCURRENT 32, RENEWAL_QUEUE_PER_TENANT 200, RENEWAL_QUEUE_WAIT_MS 10000) and the
 * peer without it (every request run at once, as before), with the ratios.
 *
 *   node --import tsx bench/renewal-storm.bench.ts
 */
import { emitTable, ratio, round, scaled } from './support/results.ts';
import { loadavg } from 'node:os';
import { fmt, percentile } from './support/server.ts';
import { enrollFleet, issuedPerDevice, runStorm, startStormStack } from '../test/support/renewal-storm.ts';

const DEVICES = Number(process.env.BENCH_STORM_DEVICES ?? scaled(10_000, 1_000));
const SPREAD_MS = Number(process.env.BENCH_STORM_SPREAD_MS ?? scaled(60_000, 10_000));

interface Figures {
  label: string;
  renewalsPerSecond: number;
  p50: number;
  p99: number;
  smallP99: number;
  refusedDevices: number;
  refusals: number;
  errors: number;
  notExactlyOnce: number;
  replayMismatches: number;
  seconds: number;
  /** Requests in flight at once (sent, not yet answered), at most. */
  peakInFlight: number;
  /** HTTP 5xx other than 503 + Retry-After, and MQTT problems with status >= 500 without retry_after_seconds. */
  serverErrors: number;
  /** Connection failures the devices retried (backoff with jitter), by kind; devices that saw one. */
  connectionErrors: Record<string, number>;
  devicesWithConnectionErrors: number;
  /** On the EST listener: connections dropped over its cap, TLS client errors by kind. */
  listenerDrops: number;
  listenerTlsErrors: Record<string, number>;
  renewed: number;
  /** 1-minute load average at the storm's start and end. */
  load: string;
}

async function scenario(label: string, env: Record<string, string>): Promise<Figures> {
  const stack = await startStormStack('bench-storm', { ISSUANCE_RATE_PER_MINUTE: '0', LOG_LEVEL: 'warn', EST_MAX_CONNECTIONS: '4096', HTTP_MAX_CONNECTIONS: '256', ...env });
  try {
    const big = Math.round(DEVICES * 0.9);
    const enrollStart = performance.now();
    const devices = await enrollFleet(stack, { big, small: DEVICES - big }, 3, 32);
    process.stdout.write(`${label}: ${DEVICES} devices enrolled in ${fmt((performance.now() - enrollStart) / 1000)} s; storm over ${SPREAD_MS / 1000} s\n`);
    // Interleave the tenants in time, as a real storm would.
    devices.sort((a, b) => Number(a.deviceId.slice(4)) / (a.tenant === 'big' ? big : DEVICES - big) - Number(b.deviceId.slice(4)) / (b.tenant === 'big' ? big : DEVICES - big));
    const loadAtStart = loadavg()[0];
    const { outcomes, elapsedMs, peakInFlight, mqttConnectErrors } = await runStorm(stack, devices, {
      spreadMs: SPREAD_MS,
      lostAnswerEvery: 10,
      maxAttempts: 1000,
      progress: (p) => process.stdout.write(`${label}: ${JSON.stringify({ ...p, seconds: Math.round(p.seconds), load: loadavg()[0].toFixed(1) })}\n`),
    });
    const connectionErrors: Record<string, number> = {};
    for (const kind of [...outcomes.flatMap((o) => o.connectionErrors), ...mqttConnectErrors.map((k) => `mqtt connect: ${k}`)]) connectionErrors[kind] = (connectionErrors[kind] ?? 0) + 1;
    const issued = await issuedPerDevice(stack);
    const latencies = outcomes.filter((o) => o.certPem).map((o) => o.latencyMs).sort((a, b) => a - b);
    const small = outcomes.filter((o) => o.certPem && o.device.tenant === 'small').map((o) => o.latencyMs).sort((a, b) => a - b);
    const errors = outcomes.filter((o) => o.errors.length > 0);
    for (const o of errors.slice(0, 5)) process.stdout.write(`  error ${o.device.tenant}/${o.device.deviceId} (${o.device.transport}): ${o.errors.join('; ').slice(0, 300)}\n`);
    const figures: Figures = {
      label,
      renewalsPerSecond: latencies.length / (elapsedMs / 1000),
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      smallP99: percentile(small, 99),
      refusedDevices: outcomes.filter((o) => o.refused > 0).length,
      refusals: outcomes.reduce((n, o) => n + o.refused, 0),
      errors: errors.length,
      notExactlyOnce: devices.filter((d) => {
        const got = issued.get(`${d.tenant}/${d.deviceId}`);
        return got?.certificates !== 2 || got.rotations !== 1;
      }).length,
      replayMismatches: outcomes.filter((o) => o.replayedSame === false).length,
      seconds: elapsedMs / 1000,
      peakInFlight,
      serverErrors: outcomes.reduce((n, o) => n + o.serverErrors, 0),
      connectionErrors,
      devicesWithConnectionErrors: outcomes.filter((o) => o.connectionErrors.length > 0).length,
      listenerDrops: stack.serverEvents.drops,
      listenerTlsErrors: Object.fromEntries(stack.serverEvents.tlsClientErrors),
      renewed: outcomes.filter((o) => o.certPem).length,
      load: `${loadAtStart.toFixed(1)}–${loadavg()[0].toFixed(1)}`,
    };
    process.stdout.write(`${label}: ${JSON.stringify(figures)}\n`);
    return figures;
  } finally {
    await stack.close();
  }
}

// BENCH_STORM_CONCURRENCY: RENEWAL_MAX_CONCURRENT for the admission run (default: the default, 32).
const concurrency = process.env.BENCH_STORM_CONCURRENCY;
const admission = await scenario(concurrency ? `admission (RENEWAL_MAX_CONCURRENT=${concurrency})` : 'admission (defaults)', concurrency ? { RENEWAL_MAX_CONCURRENT: concurrency } : {});
const peer = process.env.BENCH_STORM_NO_PEER === '1' ? null : await scenario('no admission (peer)', { RENEWAL_MAX_CONCURRENT: '1000', RENEWAL_QUEUE_PER_TENANT: '1000000', RENEWAL_QUEUE_WAIT_MS: '600000' });

emitTable({
  id: 'renewal-storm',
  title: `Renewal storm: ${DEVICES.toLocaleString('en-US')} devices within ${SPREAD_MS / 1000} s (EST and MQTT)`,
  description: `${DEVICES} devices of two tenants (90% / 10%), one third renewing over MQTT through a real Mosquitto (broker-config --mqtt-renewal), two thirds over EST (Node TLS, base64 PKCS#10), each with a CSR for a new EC key, starting evenly over ${SPREAD_MS / 1000} s; a device told SERVICE_SATURATED waits Retry-After (EST) / retry_after_seconds (MQTT) and asks again; every tenth device asks again after its certificate (a lost answer) and must get the same one. Latency: first request to certificate, retries included. "not exactly once": devices without exactly one new certificate and one rotation afterwards (database). certfleet with its admission (defaults) against the same storm without it, same process, real Postgres.`,
  columns: [
    'configuration',
    'renewed',
    'renewals/s',
    'p50 ms',
    'p99 ms',
    'small tenant p99 ms',
    'max in flight',
    'devices refused then retried',
    '503 + Retry-After answers',
    '5xx (other)',
    'connection errors retried (devices)',
    'listener drops / TLS errors',
    'errors',
    'not exactly once',
    'lost-answer replays differing',
    'time to renew all s',
    'load avg (1 min, start–end)',
  ],
  rows: [admission, ...(peer ? [peer] : [])].map((f) => [
    f.label,
    f.renewed,
    round(f.renewalsPerSecond),
    round(f.p50),
    round(f.p99),
    round(f.smallP99),
    f.peakInFlight,
    f.refusedDevices,
    f.refusals,
    f.serverErrors,
    `${Object.values(f.connectionErrors).reduce((a, b) => a + b, 0)} (${f.devicesWithConnectionErrors})`,
    `${f.listenerDrops} / ${Object.values(f.listenerTlsErrors).reduce((a, b) => a + b, 0)}`,
    f.errors,
    f.notExactlyOnce,
    f.replayMismatches,
    round(f.seconds),
    f.load,
  ]),
  notes: [
    peer
      ? `admission / peer: renewals/s ${ratio(admission.renewalsPerSecond, peer.renewalsPerSecond)}, p99 ${ratio(admission.p99, peer.p99)}, small tenant p99 ${ratio(admission.smallP99, peer.smallP99)}.`
      : 'peer not run (BENCH_STORM_NO_PEER=1).',
    `Fleet size run: ${DEVICES} devices (BENCH_STORM_DEVICES), on ${process.env.BENCH_MACHINE ?? 'this machine'}.`,
    ...[admission, ...(peer ? [peer] : [])].map(
      (f) => `${f.label}: connection errors by kind ${JSON.stringify(f.connectionErrors)}; EST listener TLS client errors ${JSON.stringify(f.listenerTlsErrors)}, drops over EST_MAX_CONNECTIONS ${f.listenerDrops}.`,
    ),
  ],
});
