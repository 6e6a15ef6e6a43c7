/**
 * certfleet's own MQTT client on the broker, as its admin identity (BROKER_ADMIN_*): one place for
 * the connect options and the shared subscription that MQTT renewal and MQTT provisioning both
 * use (one replica answers each request).
 */
import { randomUUID } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import type { BrokerAdminConnection } from '../broker/admin-credentials.ts';

/** certfleet's in-flight window on the broker: the MQTT 5 maximum. */
export const RECEIVE_MAXIMUM = 65_535;

/**
 * Connects as the broker admin (client id `certfleet-<role>-<random>`) and subscribes, QoS 1, to
 * each filter inside the shared group `certfleet-<role>`. A refused subscription closes the client
 * and throws `refused` (what to check in the broker's configuration).
 */
export async function connectAsAdmin(connection: BrokerAdminConnection, role: string, filters: string[], refused: string): Promise<MqttClient> {
  const client: MqttClient = await mqtt.connectAsync(connection.url, {
    username: connection.username,
    password: connection.password,
    ca: connection.ca,
    protocolVersion: 5,
    clean: true,
    reconnectPeriod: 2000,
    clientId: `certfleet-${role}-${randomUUID().slice(0, 8)}`,
    // The broker may send this many QoS 1 requests unacknowledged (MQTT 5 Receive Maximum; the
    // largest allowed). Without it Mosquitto uses max_inflight_messages (20) and queues at most
    // max_queued_messages (1000) more per client: when a storm keeps this process from reading
    // its socket, it silently drops the rest (test/mqtt-renewal-queue.test.ts). Each request is
    // acknowledged on arrival and answered by admission (or SERVICE_SATURATED).
    properties: { receiveMaximum: RECEIVE_MAXIMUM },
  });
  const granted = await client.subscribeAsync(
    filters.map((f) => `$share/certfleet-${role}/${f}`),
    { qos: 1 },
  );
  if (granted.some((g) => g.qos > 2)) {
    await client.endAsync(true);
    throw new Error(refused);
  }
  return client;
}
