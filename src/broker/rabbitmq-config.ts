/**
 * A RabbitMQ 3.10 node for devices over MQTT with certfleet's certificates (measured on Debian's
 * rabbitmq-server 3.10.8, Erlang/OTP 25):
 * - an MQTT TLS listener that requires a client certificate (`verify_peer`,
 *   `fail_if_no_peer_cert`), login from the certificate CN (`mqtt.ssl_cert_login`,
 *   `ssl_cert_login_from = common_name`), no anonymous login, no plain TCP listener;
 * - CRL checking of the peer by OTP's ssl (`crl_check peer`) from a hash directory
 *   (`ssl_crl_hash_dir`): one `<issuer hash>.r0` per CA, read at every handshake, so the agent
 *   writes a new CRL there and no reload is needed; a revoked device gets TLS alert 44;
 * - the management API on 127.0.0.1 only, for the agent (close live connections, canary users)
 *   and for certfleet, which keeps a user per registered device with its vhost and topic
 *   permissions (src/broker/rabbitmq-sync.ts; a certificate login needs an existing user);
 * - devices on `amq.topic` of vhost `/` (`mqtt.vhost`, `mqtt.exchange`). The default user (the
 *   admin) is the only one with full permissions; no permission is granted by default to anyone else.
 * The CRL options exist only in advanced.config (rabbitmq.conf has no key for them), so the
 * whole `ssl_options` list is written there.
 */
export interface RabbitmqConfigOptions {
  mqttTlsPort: number;
  managementPort: number;
  /** CA certificates devices may chain to (the Device CA, or several). */
  cacertfile: string;
  certfile: string;
  keyfile: string;
  crlDir: string;
  adminUsername: string;
  adminPassword: string;
}

const erlString = (s: string) => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;

export function renderRabbitmqConfig(o: RabbitmqConfigOptions): { conf: string; advanced: string; enabledPlugins: string } {
  for (const [k, v] of Object.entries(o)) if (typeof v === 'string' && /[\n\r]/.test(v)) throw new TypeError(`rabbitmq config: ${k} must be one line`);
  const conf = [
    '# certfleet: devices over MQTT with client certificates (see advanced.config for TLS and CRLs)',
    'listeners.tcp = none',
    'mqtt.listeners.tcp = none',
    `mqtt.listeners.ssl.default = ${o.mqttTlsPort}`,
    'mqtt.allow_anonymous = false',
    '# devices publish and subscribe on amq.topic of this vhost; certfleet gives each device user',
    '# (its certificate CN) only MQTT\'s own queues and exchange, and topic permissions on amq.topic',
    '# for its own subtree and its tenant\'s grants (BROKER_RABBITMQ_ADMIN_URL, src/broker/rabbitmq-sync.ts)',
    'mqtt.vhost = /',
    'mqtt.exchange = amq.topic',
    'mqtt.ssl_cert_login = true',
    'ssl_cert_login_from = common_name',
    `management.tcp.port = ${o.managementPort}`,
    'management.tcp.ip = 127.0.0.1',
    `default_user = ${o.adminUsername}`,
    `default_pass = ${o.adminPassword}`,
    'default_user_tags.administrator = true',
    '',
  ].join('\n');
  const advanced = `[{rabbit, [{ssl_options, [
  {cacertfile, ${erlString(o.cacertfile)}},
  {certfile, ${erlString(o.certfile)}},
  {keyfile, ${erlString(o.keyfile)}},
  {verify, verify_peer},
  {fail_if_no_peer_cert, true},
  {crl_check, peer},
  {crl_cache, {ssl_crl_hash_dir, {internal, [{dir, ${erlString(o.crlDir)}}]}}}
]}]}].
`;
  return { conf, advanced, enabledPlugins: '[rabbitmq_mqtt,rabbitmq_management].\n' };
}
