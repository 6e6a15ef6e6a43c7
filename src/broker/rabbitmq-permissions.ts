/**
 * Per-device topic permissions on RabbitMQ's MQTT plugin, matching the Mosquitto acl_file
 * (src/domain/broker-acl.ts): a device (user `tenant/device`, the certificate CN) may publish and
 * subscribe under `tenant/<tenant>/device/<device>/...`, its tenant's grants, and (MQTT renewal)
 * its own renewal topics; nothing else. Measured on RabbitMQ 3.10.8:
 *
 * - Certificate login (`mqtt.ssl_cert_login`) with the internal backend needs the user to exist:
 *   certfleet creates one per registered device (no password: `password_hash` empty, which no
 *   password login matches), tagged `certfleet-device` so it deletes only its own.
 * - A user with NO topic permission on `amq.topic` may use every topic (RabbitMQ authorises
 *   topics only when a permission exists): every device user always gets one, written before (or
 *   with) the vhost permission that lets it connect at all.
 * - The MQTT plugin maps a topic to an AMQP routing key by `/` → `.` and `+` → `*` only: a `.`
 *   inside a topic level is a level separator for RabbitMQ (`tenant/T/device/a.b/x` and
 *   `tenant/T/device/a/b/x` are the same key, `tenant.T.device.a.b.x`). A device `a` may use
 *   `tenant.T.device.a.#`, so it would reach every topic of a device `a.b`, and a tenant `T.x`
 *   would meet tenant `T`'s subtree `x`. RabbitMQ cannot tell them apart, so ids (tenant or
 *   device) and grant filters containing `.` get nothing on RabbitMQ: no user (the device cannot
 *   log in), no grant (listed in `skipped`). Every other id character (`A-Z a-z 0-9 _ : -`) is
 *   literal in a key and regex-escaped here.
 * - Topic permissions are regexes on the routing key; for a subscription RabbitMQ checks the
 *   binding key, where `+` is `*` and `#` is `#` literally: `[^.#]+` stands for one level (a
 *   name or `*`), so a grant `foo/+` does not admit `foo/#`.
 * - What MQTT needs of the vhost: configure its subscription queues (`mqtt-subscription-<client
 *   id>qos0|1`), write to `amq.topic` and to those queues (bindings), read `amq.topic` and those
 *   queues (bindings, consuming). Nothing else (no other exchange, no other queue), and only the
 *   queues of the device's own client ids (`<CN>` or `<CN>/...`): a device that subscribes must
 *   use such a client id; publishing works with any.
 */
import { type AclDevice, type BrokerGrant, tenantTopicOf } from '../domain/broker-acl.ts';
import { isValidId } from '../domain/identifiers.ts';
import { requestTopic, responseTopic } from '../renewal/renewal-topics.ts';

export const DEVICE_USER_TAG = 'certfleet-device';
export const MQTT_EXCHANGE = 'amq.topic';
/**
 * The vhost permission of a device user: MQTT's own exchange, and only the subscription queues of
 * client ids `<CN>` or `<CN>/<anything>` (a CN has exactly one `/` and ids have none, so no other
 * device's client id fits). Without this pin a device connecting with another device's client id
 * would resume its persistent session: its queue, with the bindings the other device was allowed
 * (RabbitMQ checks topic permissions when a binding is made, not at delivery).
 */
export function deviceVhostPermission(commonName: string): VhostPermission {
  const queues = `mqtt-subscription-${escapeRegex(commonName)}(/.*)?qos[01]`;
  return { configure: `^${queues}$`, write: `^(amq\\.topic|${queues})$`, read: `^(amq\\.topic|${queues})$` };
}

export interface VhostPermission {
  configure: string;
  write: string;
  read: string;
}

export interface TopicPermission {
  write: string;
  read: string;
  /** The user's vhost permission (deviceVhostPermission). */
  vhost: VhostPermission;
}

export interface RabbitmqDevicePermissions {
  /** users by name (the CN) → their topic permission on amq.topic */
  users: Map<string, TopicPermission>;
  /** `tenant/device` ids and `tenant: filter` grants that get nothing on RabbitMQ (a `.`, or not a valid id). */
  skipped: string[];
}

const escapeRegex = (s: string) => s.replace(/[\\^$.|?*+()[\]{}]/g, '\\$&');
/** A usable id on RabbitMQ: a valid id without `.`. */
export const rabbitmqSafeId = (id: string): boolean => isValidId(id) && !id.includes('.');

/** MQTT topic (no wildcard in ids) → the regex body matching its routing key exactly. */
const literalKey = (topic: string) => topic.split('/').map(escapeRegex).join('\\.');

/** An MQTT filter → the regex body matching the routing keys and binding keys it covers. */
export function filterToKeyRegex(filter: string): string {
  const levels = filter.split('/');
  let out = '';
  levels.forEach((level, i) => {
    if (level === '#') {
      // `a/#` covers `a` itself and everything below it
      out += i === 0 ? '.*' : '(\\..*)?';
      return;
    }
    const part = level === '+' ? '[^.#]+' : escapeRegex(level);
    out += i === 0 ? part : `\\.${part}`;
  });
  return out;
}

const anyOf = (bodies: string[]) => (bodies.length ? `^(${bodies.join('|')})$` : '^$');

/**
 * What every registered device may do on RabbitMQ (pure). Grant filters were validated when they
 * were set (src/domain/broker-acl.ts); a filter with `.` is skipped here.
 */
export function renderRabbitmqPermissions(options: {
  devices: Iterable<AclDevice>;
  grants?: ReadonlyMap<string, readonly BrokerGrant[]>;
  renewalTopics?: boolean;
}): RabbitmqDevicePermissions {
  const users = new Map<string, TopicPermission>();
  const skipped: string[] = [];
  const grantBodies = new Map<string, { read: string[]; write: string[] }>();
  const tenantGrants = (tenant: string) => {
    let bodies = grantBodies.get(tenant);
    if (!bodies) {
      bodies = { read: [], write: [] };
      for (const g of options.grants?.get(tenant) ?? []) {
        if (g.filter.includes('.')) {
          skipped.push(`${tenant}: ${g.filter}`.slice(0, 300));
          continue;
        }
        const body = filterToKeyRegex(tenantTopicOf(tenant, g.filter));
        if (g.access !== 'write') bodies.read.push(body);
        if (g.access !== 'read') bodies.write.push(body);
      }
      grantBodies.set(tenant, bodies);
    }
    return bodies;
  };
  for (const d of options.devices) {
    if (!rabbitmqSafeId(d.tenantId) || !rabbitmqSafeId(d.deviceId)) {
      skipped.push(`${d.tenantId}/${d.deviceId}`.slice(0, 300));
      continue;
    }
    const own = `${literalKey(`tenant/${d.tenantId}/device/${d.deviceId}`)}(\\..*)?`;
    const grants = tenantGrants(d.tenantId);
    const cn = `${d.tenantId}/${d.deviceId}`;
    const read = [own, ...grants.read];
    const write = [own, ...grants.write];
    if (options.renewalTopics) {
      read.push(literalKey(responseTopic(cn)));
      write.push(literalKey(requestTopic(cn)));
    }
    users.set(cn, { read: anyOf(read), write: anyOf(write), vhost: deviceVhostPermission(cn) });
  }
  return { users, skipped };
}
