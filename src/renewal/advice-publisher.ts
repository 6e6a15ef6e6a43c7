/**
 * Publishes renewal advice as the broker admin (BROKER_ADMIN_*): a retained message on
 * `certfleet/renew/<CN>/advice`, which only that device may read (acl_file pattern); an empty
 * retained message clears it. Connects on first use.
 */
import { randomUUID } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import type { RenewalAdvicePublisher } from '../app/publish-renewal-advice.ts';
import type { BrokerAdminConnection } from '../broker/admin-credentials.ts';
import { adviceTopic } from './renewal-topics.ts';

export function createMqttAdvicePublisher(connection: () => Promise<BrokerAdminConnection>): RenewalAdvicePublisher & { close(): Promise<void> } {
  let client: Promise<MqttClient> | null = null;
  const connect = async () => {
    const c = await connection();
    // mqtt is loaded on the first advice, not at the worker's start.
    const { default: mqtt } = await import('mqtt');
    return mqtt.connectAsync(c.url, {
      username: c.username,
      password: c.password,
      ca: c.ca,
      protocolVersion: 5,
      clean: true,
      reconnectPeriod: 2000,
      clientId: `certfleet-advice-${randomUUID().slice(0, 8)}`,
    });
  };
  return {
    async publish(commonName, payload) {
      client ??= connect().catch((e: unknown) => {
        client = null;
        throw e;
      });
      await (await client).publishAsync(adviceTopic(commonName), payload ?? '', { qos: 1, retain: true });
    },
    async close() {
      const c = client;
      client = null;
      if (c) await (await c.catch(() => null))?.endAsync();
    },
  };
}
