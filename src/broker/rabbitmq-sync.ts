/**
 * Keeps a RabbitMQ node's device users and their permissions equal to what certfleet renders from
 * the registered devices and the tenants' broker grants (src/broker/rabbitmq-permissions.ts),
 * through the management HTTP API (BROKER_RABBITMQ_ADMIN_URL). The RabbitMQ counterpart of the
 * Mosquitto acl_file sync (src/broker/acl-sync.ts), coalesced the same way: while a sync runs,
 * every further call waits for ONE more run that starts after it.
 *
 * One run reads the node's users, vhost permissions and topic permissions and changes only what
 * differs, in an order that never leaves a device user able to connect without its topic
 * permission (a user without one may use every topic):
 *   1. new users and changed topic permissions (one `POST /api/definitions`): a new user has no
 *      vhost permission yet, so it cannot connect;
 *   2. vhost permissions (one `POST /api/definitions`): now it can;
 *   3. users tagged `certfleet-device` that are no longer registered (or got an id RabbitMQ cannot
 *      isolate): deleted (`POST /api/users/bulk-delete`) and their connections closed.
 * Users without the tag (the admin, the agent's canaries, anything an operator made) are never touched.
 */
import type { Logger } from '../support/logger.ts';
import { DEVICE_USER_TAG, MQTT_EXCHANGE, type RabbitmqDevicePermissions, type TopicPermission } from './rabbitmq-permissions.ts';
import { coalesced } from '../support/coalesce.ts';

export interface RabbitmqManagementOptions {
  url: string;
  username: string;
  /** Read at every sync (a rotated password file is picked up). */
  password: () => Promise<string>;
  vhost: string;
  timeoutMs?: number;
}

export interface RabbitmqSyncResult {
  devices: number;
  created: number;
  updated: number;
  deleted: number;
  skipped: number;
  ms: number;
}

export interface RabbitmqSync {
  sync(): Promise<RabbitmqSyncResult>;
}

type Json = Record<string, unknown>;

export function rabbitmqManagement(options: RabbitmqManagementOptions) {
  const base = options.url.replace(/\/+$/, '');
  return async function request(method: string, path: string, body?: unknown): Promise<unknown> {
    const auth = `Basic ${Buffer.from(`${options.username}:${await options.password()}`).toString('base64')}`;
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: auth, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(options.timeoutMs ?? 30_000),
    });
    const text = await res.text();
    if (!res.ok && !(method === 'DELETE' && res.status === 404)) throw new Error(`RabbitMQ management ${method} ${path}: HTTP ${res.status} ${text.slice(0, 300)}`);
    return text ? (JSON.parse(text) as unknown) : null;
  };
}

/** A user's tags: RabbitMQ 3.10 answers a list, older versions a comma-separated string. */
const tagsOf = (u: Json): string[] => {
  if (Array.isArray(u.tags)) return u.tags.map(String);
  return typeof u.tags === 'string' ? u.tags.split(',').map((t) => t.trim()).filter(Boolean) : [];
};

export function createRabbitmqSync(deps: {
  management: RabbitmqManagementOptions;
  render(): Promise<RabbitmqDevicePermissions>;
  logger: Logger;
}): RabbitmqSync {
  const request = rabbitmqManagement(deps.management);
  const vhost = deps.management.vhost;
  const v = encodeURIComponent(vhost);
  let skippedReported = '';

  async function runOnce(): Promise<RabbitmqSyncResult> {
    const started = performance.now();
    const desired = await deps.render();
    const skippedKey = desired.skipped.join('\n');
    if (desired.skipped.length && skippedKey !== skippedReported) {
      deps.logger.warn(
        { event: 'rabbitmq_ids_skipped', skipped: desired.skipped.slice(0, 100), count: desired.skipped.length },
        'ids or grant filters with "." (or invalid ids) get nothing on RabbitMQ: its MQTT plugin maps "/" and "." to the same routing-key separator, so they could reach other devices’ topics; see the README, broker fleet',
      );
    }
    skippedReported = skippedKey;
    const [users, permissions, topicPermissions] = (await Promise.all([
      request('GET', '/api/users'),
      request('GET', `/api/vhosts/${v}/permissions`),
      request('GET', `/api/vhosts/${v}/topic-permissions`),
    ])) as [Json[], Json[], Json[]];
    const deviceUsers = new Set(users.filter((u) => tagsOf(u).includes(DEVICE_USER_TAG)).map((u) => String(u.name)));
    const vhostPerm = new Map(permissions.map((p) => [String(p.user), p]));
    const topicPerm = new Map(topicPermissions.filter((p) => p.exchange === MQTT_EXCHANGE).map((p) => [String(p.user), p]));

    const newUsers: string[] = [];
    const topicChanges: Array<[string, TopicPermission]> = [];
    const vhostChanges: Array<[string, TopicPermission]> = [];
    for (const [name, want] of desired.users) {
      if (!deviceUsers.has(name)) newUsers.push(name);
      const has = topicPerm.get(name);
      if (!has || has.read !== want.read || has.write !== want.write) topicChanges.push([name, want]);
      const perm = vhostPerm.get(name);
      if (!perm || perm.configure !== want.vhost.configure || perm.write !== want.vhost.write || perm.read !== want.vhost.read) {
        vhostChanges.push([name, want]);
      }
    }
    const created = new Set(newUsers);
    const stale = [...deviceUsers].filter((name) => !desired.users.has(name));

    if (newUsers.length || topicChanges.length) {
      await request('POST', '/api/definitions', {
        users: newUsers.map((name) => ({ name, password_hash: '', hashing_algorithm: 'rabbit_password_hashing_sha256', tags: [DEVICE_USER_TAG] })),
        topic_permissions: topicChanges.map(([user, p]) => ({ user, vhost, exchange: MQTT_EXCHANGE, write: p.write, read: p.read })),
      });
    }
    if (vhostChanges.length) {
      await request('POST', '/api/definitions', { permissions: vhostChanges.map(([user, p]) => ({ user, vhost, ...p.vhost })) });
    }
    if (stale.length) {
      await request('POST', '/api/users/bulk-delete', { users: stale });
      for (const name of stale) await request('DELETE', `/api/connections/username/${encodeURIComponent(name)}`);
    }
    const result: RabbitmqSyncResult = {
      devices: desired.users.size,
      created: newUsers.length,
      updated: new Set([...topicChanges.map(([n]) => n), ...vhostChanges.map(([n]) => n)].filter((n) => !created.has(n))).size,
      deleted: stale.length,
      skipped: desired.skipped.length,
      ms: performance.now() - started,
    };
    if (result.created || result.updated || result.deleted) deps.logger.info({ event: 'rabbitmq_permissions_synced', ...result }, 'RabbitMQ device users and permissions updated');
    return result;
  }

  const sync = coalesced(runOnce);
  return { sync };
}
