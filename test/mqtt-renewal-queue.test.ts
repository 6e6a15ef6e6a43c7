/**
 * Renewal storm, MQTT side (issue 21 item 5): no request may be lost between the broker and
 * certfleet. A 10,000-device storm lost 937 MQTT renewal requests, never answered. Mosquitto sends
 * a subscriber at most its in-flight window of QoS 1 messages unacknowledged (20 by default, or
 * what the client's MQTT 5 Receive Maximum asks for) and queues at most `max_queued_messages`
 * (1000) more per client; beyond that it drops them silently ("Outgoing messages are being dropped
 * for client ..."), while each device got its PUBACK. certfleet's responder is one client per
 * replica and is slow to acknowledge exactly when a storm keeps its process busy.
 *
 * Here certfleet's responder is held up for real: its connection to a real Mosquitto (configured by
 * `broker-config --mqtt-renewal` and run as written) goes through a TCP relay that stops
 * forwarding the broker's bytes, as a busy process stops reading its socket. 30 devices publish
 * 50 requests each (1,500, every one acknowledged by the broker) while it is held; then it reads
 * again, and every request must be answered.
 */
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aclPluginPath } from './support/acl-plugin.ts';
import type { TestDatabase } from './support/databases.ts';
import type { RunningMosquitto } from './support/mosquitto.ts';
import { startBrokerTest, type RunningBrokerTest } from './support/broker-fixture.ts';
import { tlsOptions } from './support/mqtt-clients.ts';
import { startTestService, type TestService } from './support/service.ts';
import { scaled } from './support/timeouts.ts';

const TENANT = 'TENANT1';
const DEVICES = 30;
const REQUESTS_PER_DEVICE = 50; // 1,500 in all: more than Mosquitto's default in-flight window (20) and queue (1,000) together

/** A TCP relay to the broker whose broker → client direction can be held (the client then reads nothing, as a busy process). */
async function startRelay(targetPort: number) {
  let held = false;
  const upstreams = new Set<net.Socket>();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    upstreams.add(upstream);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        sockets.delete(s);
        upstreams.delete(upstream);
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d) => {
      if (!client.write(d) && !held) {
        upstream.pause();
        client.once('drain', () => {
          if (!held) upstream.resume();
        });
      }
    });
    if (held) upstream.pause();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    hold() {
      held = true;
      for (const u of upstreams) u.pause();
    },
    release() {
      held = false;
      for (const u of upstreams) u.resume();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

let setup: RunningBrokerTest;
let tmp: string;
let database: TestDatabase;
let broker: RunningMosquitto;
let relay: Awaited<ReturnType<typeof startRelay>>;
let t: TestService;
let port: number;
let combinedCa: string;
const devices: MqttClient[] = [];

const file = (name: string) => join(tmp, name);

beforeAll(async () => {
  setup = await startBrokerTest('mqtt-queue', { args: () => ['--mqtt-renewal', '--acl-plugin', aclPluginPath()] });
  ({ tmp, database, broker, port } = setup);
  combinedCa = setup.config.files.combinedCa;
  relay = await startRelay(setup.adminPort);
  const env = { ...setup.env, BROKER_ADMIN_URL: `mqtt://127.0.0.1:${relay.port}` };
  t = await startTestService(database, { dataDir: file('data'), env });
  await t.service.renewal.start(t.service.app.log);
}, scaled(120_000));

afterAll(async () => {
  await Promise.allSettled(devices.map((d) => d.endAsync(true)));
  await t?.close();
  await relay?.close();
  await setup?.close();
}, scaled(60_000));

describe('MQTT renewal requests while certfleet is busy (real Mosquitto, broker-config --mqtt-renewal)', () => {
  it(`answers every one of ${DEVICES * REQUESTS_PER_DEVICE} requests that arrived while its responder read nothing`, async () => {
    const answered = new Set<string>();
    let onAnswer = () => {};
    for (let i = 0; i < DEVICES; i++) {
      const id = `q-${i}`;
      expect((await t.call(TENANT, 'POST', '/customer/devices', { device_id: id })).status).toBe(201);
      const issued = await t.call(TENANT, 'POST', `/customer/devices/${id}/certificates/generate`, { key_type: 'ec-p256' });
      expect(issued.status, issued.body).toBe(201);
      writeFileSync(file(`${id}.crt`), issued.json.cert_pem);
      writeFileSync(file(`${id}.key`), issued.json.private_key_pem, { mode: 0o600 });
      const client = await mqtt.connectAsync(`mqtts://localhost:${port}`, {
        ...tlsOptions({ port, cafile: combinedCa, cert: file(`${id}.crt`), key: file(`${id}.key`) }),
        protocolVersion: 5,
        reconnectPeriod: 0,
        connectTimeout: scaled(20_000),
      });
      devices.push(client);
      client.on('message', (_topic, payload) => {
        answered.add(String((JSON.parse(payload.toString()) as { request_id: unknown }).request_id));
        onAnswer();
      });
      await client.subscribeAsync(`certfleet/renew/${TENANT}/${id}/response`, { qos: 1 });
    }
    // certfleet answers through the relay: a round trip before it is held.
    await devices[0]!.publishAsync(`certfleet/renew/${TENANT}/q-0/request`, JSON.stringify({ request_id: 'warm-up' }), { qos: 1 });
    await new Promise<void>((resolve) => {
      onAnswer = () => answered.has('warm-up') && resolve();
      onAnswer();
    });

    // The responder reads nothing (a busy process); every device's requests reach the broker (PUBACK).
    relay.hold();
    const logOffset = broker.logs().length;
    const sent: string[] = [];
    await Promise.all(
      devices.map(async (client, i) => {
        for (let n = 0; n < REQUESTS_PER_DEVICE; n++) {
          const requestId = `q-${i}-${n}`;
          sent.push(requestId);
          // A request without a certificate: answered at once (VALIDATION_FAILED), no signing work; what matters is that it is answered.
          await client.publishAsync(`certfleet/renew/${TENANT}/q-${i}/request`, JSON.stringify({ request_id: requestId }), { qos: 1 });
        }
      }),
    );
    relay.release();

    // Every request answered, or the broker says it dropped some (both are signals; the bound only
    // turns a silent loss into a failure).
    const all = new Promise<void>((resolve) => {
      onAnswer = () => sent.every((id) => answered.has(id)) && resolve();
      onAnswer();
    });
    const dropped = broker.waitForLog(/Outgoing messages are being dropped/, scaled(60_000), logOffset).then(
      () => 'dropped' as const,
      () => 'not answered in time' as const,
    );
    const outcome = await Promise.race([all.then(() => 'all answered' as const), dropped]);
    // On a loss: what the broker said, and how many were unanswered when it did (before the fix:
    // 480 of 1,500, the 20 in flight and 1,000 queued answered, the rest dropped, never answered).
    const unanswered = sent.filter((id) => !answered.has(id)).length;
    expect({ outcome, unanswered }).toEqual({ outcome: 'all answered', unanswered: 0 });
    expect(broker.logs().slice(logOffset)).not.toMatch(/Outgoing messages are being dropped/);
  }, scaled(180_000));
});
