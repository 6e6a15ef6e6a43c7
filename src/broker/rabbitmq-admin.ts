/**
 * RabbitMQ's management HTTP API as a broker agent uses it (`--broker rabbitmq --admin-url
 * http://127.0.0.1:15672`):
 * - `kick(cn)`: closes every connection whose user is the certificate CN (MQTT connections
 *   authenticated by `ssl_cert_login_from = common_name`): DELETE /api/connections/username/{cn},
 *   which reads the node's connection tracking (GET /api/connections lists a connection only
 *   after the next statistics round, up to 5 s later, and would miss a fresh one). RabbitMQ 3.10 keeps a revoked device's live
 *   connection open after a new CRL (OTP checks CRLs only in handshakes), like Mosquitto.
 * - `ensureUser(cn)`: a user without password and with no permission on any resource of the
 *   vhost (`^$`): what a canary needs to complete an MQTT CONNECT and nothing more.
 */
import type { KickResult, SessionKicker } from './session-kicker.ts';

export interface RabbitmqAdminOptions {
  url: string;
  username: string;
  password: string;
  vhost?: string;
  timeoutMs?: number;
}

export function createRabbitmqAdmin(options: RabbitmqAdminOptions): SessionKicker & { ensureUser(name: string): Promise<void> } {
  const base = options.url.replace(/\/+$/, '');
  const auth = `Basic ${Buffer.from(`${options.username}:${options.password}`).toString('base64')}`;
  const vhost = options.vhost ?? '/';
  const request = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: auth, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), 'x-reason': 'certificate revoked (certfleet)' },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(options.timeoutMs ?? 5000),
    });
    const text = await res.text();
    if (!res.ok && res.status !== 404) throw new Error(`RabbitMQ management ${method} ${path}: HTTP ${res.status} ${text.slice(0, 200)}`);
    return text ? (JSON.parse(text) as unknown) : null;
  };
  return {
    async kick(commonName): Promise<KickResult> {
      await request('DELETE', `/api/connections/username/${encodeURIComponent(commonName)}`);
      return { commonName, method: 'close-connections' };
    },
    async ensureUser(name) {
      await request('PUT', `/api/users/${encodeURIComponent(name)}`, { password_hash: '', tags: '' });
      await request('PUT', `/api/permissions/${encodeURIComponent(vhost)}/${encodeURIComponent(name)}`, { configure: '^$', write: '^$', read: '^$' });
    },
  };
}
