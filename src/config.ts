import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { parseSecretKey } from './pki/secret-box.ts';
import { parseDuration } from './domain/duration.ts';
import { pkcs11Config } from './pki/kms/pkcs11/pkcs11-config.ts';
import { DEFAULT_PKCS11_MODULE_PATH } from './pki/kms/pkcs11/pkcs11-module.ts';

export interface Config {
  port: number;
  host: string;
  databaseUrl: string | null;
  dataDir: string;
  /** CERTFLEET_PGLITE_TEMPLATE: the packed template a new embedded database starts from instead of the one the build wrote beside dist/storage (null: that one). */
  pgliteTemplatePath: string | null;
  /** CERTFLEET_PGLITE_SHARED_BUFFERS: the embedded database's buffer pool, e.g. 32MB (null: PGlite's default, 128 MB). */
  pgliteSharedBuffers: string | null;
  /** DATABASE_URL set or NODE_ENV=production: no development CA is created. */
  productionMode: boolean;
  caCertPath: string;
  caKeyPath: string;
  /** DEVICE_CA_KEY_PASSPHRASE_FILE (preferred) or DEVICE_CA_KEY_PASSPHRASE: for an encrypted PKCS#8 CA key. */
  caKeyPassphraseFile: string | null;
  caKeyPassphrase: string | null;
  /** DEVICE_CA_KEY_URI: the CA key in a PKCS#11 token (instead of DEVICE_CA_KEY_PATH), with its module, PIN file and session count. */
  pkcs11: { keyUri: string; modulePath: string; pinFile: string; sessions: number } | null;
  /** CA records (issue 19): keys certfleet generates or imports as files (CA_KEY_DIR), and the token of CA keys in PKCS#11 (PKCS11_MODULE_PATH, PKCS11_PIN_FILE). */
  caKeys: { dir: string; modulePath: string; pinFile: string | null; sessions: number };
  crlOutputPath: string;
  /** CRL_RECONCILE_PATH: a CRL (PEM or DER) the publisher reconciles with at start, e.g. after a database restore (null: none). */
  crlReconcilePath: string | null;
  crlRefreshMinutes: number;
  /** CRL_FULL_REBUILD_MINUTES: an incremental CRL publication reads every entry again and compares at least this often (0: always full). */
  crlFullRebuildMinutes: number;
  crlValidityHours: number;
  certExpiryWarningDays: number;
  /** Expiry alerts escalate to HIGH (4) at this many days left, CRITICAL (5) at certExpiryCriticalDays. */
  certExpiryHighDays: number;
  certExpiryCriticalDays: number;
  rotationGraceHours: number;
  brokerPidFile: string | null;
  brokerReloadCommand: string | null;
  /**
   * BROKER_ACL_PATH: the broker's acl_file, which this process keeps in step with the registered
   * devices and tenant grants (then reloads the broker); null: certfleet does not write it.
   */
  brokerAclPath: string | null;
  /** BROKER_ACL_PERMISSIVE=true (`broker-config --permissive-acl`): `pattern readwrite #`, tenants not isolated. */
  brokerAclPermissive: boolean;
  /**
   * BROKER_GRANTS_PATH: the certfleet_acl broker plugin's grants file (tenant grants only, no device),
   * which this process keeps in step with the tenants' broker grants; null: not written.
   */
  brokerGrantsPath: string | null;
  /**
   * BROKER_CA_PATH: the broker's `cafile` (broker-config's device-ca.crt), which this process keeps
   * equal to every trusted CA (staged, active, retiring) whose CRL is already in CRL_OUTPUT_PATH,
   * then reloads the broker; null: certfleet does not write it (one CA, written by broker-config).
   */
  brokerCaPath: string | null;
  /**
   * BROKER_CLAIM_CA_PATH: the provisioning listener's `capath` (broker-config --provisioning-port's
   * claim-cas/ directory), which this process keeps equal to every tenant's claim CAs (after a
   * claim CA is added or deleted, and checked every minute); null: not kept.
   */
  brokerClaimCaPath: string | null;
  /** Mosquitto dynamic security admin listener, to close live sessions of revoked certificates (unset: no kicking). */
  brokerAdmin: { url: string; username: string; passwordFile: string; caFile: string | null } | null;
  /**
   * A RabbitMQ node's management API (BROKER_RABBITMQ_ADMIN_URL, BROKER_RABBITMQ_ADMIN_USERNAME,
   * BROKER_RABBITMQ_ADMIN_PASSWORD_FILE, BROKER_RABBITMQ_VHOST): the process that keeps the broker's
   * files keeps its device users and topic permissions in step (src/broker/rabbitmq-sync.ts).
   */
  brokerRabbitmq?: { url: string; username: string; passwordFile: string; vhost: string } | null;
  publicBaseUrl: string;
  oidc: { issuer: string; audience: string; jwksUrl: string } | null;
  /** CERTFLEET_AUTH=development: tokens from the local development key even in production mode (warned at every start). */
  developmentAuthExplicit: boolean;
  /** CERTFLEET_DEV_TOKEN_MAX_TTL: development tokens living longer than this are refused (and not minted). */
  devTokenMaxTtlSeconds: number;
  /** METRICS_TENANT_LABELS=true: per-tenant series on /metrics. */
  metricsTenantLabels: boolean;
  /** METRICS_TOKEN: /metrics answers only requests with `Authorization: Bearer <it>`. */
  metricsToken: string | null;
  http: HttpLimits;
  /** The web console's OIDC public client (authorization code + PKCE); null: the console signs in with a pasted token. */
  consoleOidc: { clientId: string; scope: string } | null;
  logLevel: string;
  /** WEBHOOK_SECRET_KEY (32 bytes): encrypts webhook secrets at rest; null → the key file webhookSecretKeyPath. */
  webhookSecretKey: Buffer | null;
  webhookSecretKeyPath: string;
  /** WEBHOOK_SECRET_KEY_PREVIOUS: a second key accepted for reading during a key rotation (`certfleet webhooks rekey`). */
  webhookSecretKeyPrevious: Buffer | null;
  /** WEBHOOK_ALLOW_PRIVATE_NETWORKS=true: webhooks may target loopback, private and link-local addresses. */
  webhookAllowPrivateNetworks: boolean;
  /** Certificate issuance (generate, csr, rotate) per tenant: tokens per minute (0: no limit) and burst. */
  issuanceRatePerMinute: number;
  issuanceBurst: number;
  /**
   * API_PROCESSES: `certfleet api` on this many processes sharing its port (node:cluster; Postgres
   * only; default 1). Each is a whole API replica: see src/cli/api-cluster.ts for what is divided.
   */
  apiProcesses: number;
  /** Worker threads generating RSA keys (default: cores - 1, at least 1; 0: unbounded in libuv's pool, the benchmark's peer). */
  keygenWorkers: number;
  /**
   * EST (RFC 7030) listener for device enrollment and renewal; null: off (EST_PORT unset). Its
   * head, request and keep-alive timeouts are the API's (HTTP_*_TIMEOUT_MS); its own TLS
   * handshake timeout and connection cap.
   */
  est: { port: number; host: string; tlsCertPath: string | null; tlsKeyPath: string | null; handshakeTimeoutMs: number; maxConnections: number } | null;
  /** How the connection caps share the process's file descriptors (RLIMIT_NOFILE): see src/support/descriptor-budget.ts. */
  descriptors: {
    /** FD_RESERVE: descriptors kept free beyond the listeners' caps for file writes (CRL, broker files), logs and the worker. */
    reserve: number;
    /** Caps set explicitly (HTTP_MAX_CONNECTIONS, EST_MAX_CONNECTIONS) are never lowered: over-committed, the start is refused. */
    apiCapSet: boolean;
    estCapSet: boolean;
  };
  /** MQTT_RENEWAL=true: answer device renewal requests on certfleet/renew/<CN>/request as the broker admin. */
  mqttRenewal: boolean;
  /** MQTT_PROVISIONING=true: answer claim (factory) provisioning requests on certfleet/provision/<claim sha256>/request as the broker admin. */
  mqttProvisioning: boolean;
  /**
   * Admission of device renewals and enrollments (EST and MQTT, per process): RENEWAL_MAX_CONCURRENT
   * at once, RENEWAL_QUEUE_PER_TENANT waiting per tenant (served in turn), RENEWAL_QUEUE_WAIT_MS at
   * most in the queue; beyond that 503 SERVICE_SATURATED with Retry-After (src/renewal/admission.ts).
   */
  renewalAdmission: { maxConcurrent: number; queuePerTenant: number; maxWaitMs: number };
  /** Broker agents: BROKER_LAG_ALERT_SECONDS (a node this far behind the latest CRL raises BROKER_NODE_LAGGING) and BROKER_REPORT_TIMEOUT_SECONDS (silent this long: the same alert). */
  brokerFleet: {
    lagAlertSeconds: number;
    reportTimeoutSeconds: number;
    /**
     * The local broker (BROKER_PID_FILE / BROKER_RELOAD_COMMAND): after a reload of a CRL file of at least
     * BROKER_LARGE_CRL_BYTES (default 4 MiB), the next reload waits BROKER_LARGE_CRL_RELOAD_INTERVAL_SECONDS
     * (default 10; 0: no bound) after it (src/broker/bounded-reloader.ts).
     */
    largeCrlBytes?: number;
    largeCrlReloadIntervalMs?: number;
  };
}

export interface HttpLimits {
  /** Whole request head must arrive within this (slowloris). */
  headersTimeoutMs: number;
  /** Whole request (head and body) must arrive within this. */
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  /** Connections beyond this are closed at once. */
  maxConnections: number;
}

function int(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer from ${min} to ${max} (got "${raw}")`);
  return n;
}

function bool(env: NodeJS.ProcessEnv, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (/^(true|1|yes)$/i.test(raw)) return true;
  if (/^(false|0|no)$/i.test(raw)) return false;
  throw new Error(`${name} must be true or false (got "${raw}")`);
}

function ttl(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const ms = parseDuration(raw);
  if (ms === null) throw new Error(`${name} must be a duration such as 30m, 1h or 7d (got "${raw}")`);
  const seconds = ms / 1000;
  if (seconds < 1) throw new Error(`${name} must be at least 1 second (got "${raw}")`);
  return seconds;
}

/**
 * PUBLIC_BASE_URL goes into every certificate's CRL Distribution Point (an IA5String URI): an
 * absolute http or https URL of printable ASCII, no spaces, nothing after the path (the CRL path
 * is appended). Returned without trailing slashes.
 */
export function publicBaseUrl(raw: string): string {
  const fail = (why: string): never => {
    throw new Error(`PUBLIC_BASE_URL must be an absolute http or https URL of ASCII characters without spaces, e.g. https://certfleet.example.com (got "${raw}": ${why})`);
  };
  if (!/^[\x21-\x7e]+$/.test(raw)) fail('only printable ASCII, no spaces');
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return fail('not a URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') fail('the scheme must be http or https');
  if (!url.hostname) fail('no host');
  if (url.username || url.password) fail('no user name or password');
  if (url.search || url.hash || /[?#]/.test(raw)) fail('no query or fragment');
  return raw.replace(/\/+$/, '');
}

export const HTTP_MAX_CONNECTIONS_DEFAULT = 4_096;
export const EST_MAX_CONNECTIONS_DEFAULT = 1_024;

const isSet = (env: NodeJS.ProcessEnv, name: string) => env[name] !== undefined && env[name] !== '';


/** EST settings as given; the certificate paths are checked by what starts the listener (estListenerConfig). */
function estConfig(env: NodeJS.ProcessEnv, host: string): Config['est'] {
  if (env.EST_PORT === undefined || env.EST_PORT === '') return null;
  return {
    port: int(env, 'EST_PORT', 0, 0, 65535),
    host: env.EST_HOST || host,
    tlsCertPath: env.EST_TLS_CERT_PATH ? resolve(env.EST_TLS_CERT_PATH) : null,
    tlsKeyPath: env.EST_TLS_KEY_PATH ? resolve(env.EST_TLS_KEY_PATH) : null,
    handshakeTimeoutMs: int(env, 'EST_TLS_HANDSHAKE_TIMEOUT_MS', 10_000, 100, 120_000),
    maxConnections: int(env, 'EST_MAX_CONNECTIONS', EST_MAX_CONNECTIONS_DEFAULT, 1, 1_000_000),
  };
}

/**
 * The EST listener's settings, or null when EST_PORT is unset. Only the commands that start the
 * listener call this: `broker-config`, which makes the certificate it serves, runs without them.
 */
export function estListenerConfig(config: Config): { port: number; host: string; tlsCertPath: string; tlsKeyPath: string } | null {
  const est = config.est;
  if (!est) return null;
  if (!est.tlsCertPath || !est.tlsKeyPath) {
    throw new Error('EST_PORT is set but EST_TLS_CERT_PATH and EST_TLS_KEY_PATH (the TLS server certificate and key of the EST listener) are not');
  }
  return { port: est.port, host: est.host, tlsCertPath: est.tlsCertPath, tlsKeyPath: est.tlsKeyPath };
}

/** A Postgres memory size for shared_buffers (at least 1MB, at most 8GB), or null when unset. */
function sharedBuffers(raw: string | undefined): string | null {
  if (!raw) return null;
  const m = /^([1-9]\d*)(MB|GB)$/.exec(raw);
  const mb = m ? Number(m[1]) * (m[2] === 'GB' ? 1024 : 1) : 0;
  if (!m || mb > 8192) throw new Error(`CERTFLEET_PGLITE_SHARED_BUFFERS must be a size such as 32MB or 1GB, at most 8GB (got "${raw}")`);
  return raw;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const dataDir = resolve(env.CERTFLEET_DATA_DIR || './data');
  const port = int(env, 'PORT', 8080, 0, 65535);
  const host = env.HOST || '127.0.0.1';
  const databaseUrl = env.DATABASE_URL || null;
  const oidcIssuer = env.OIDC_ISSUER || null;
  if (oidcIssuer && !env.OIDC_JWKS_URL) throw new Error('OIDC_ISSUER is set but OIDC_JWKS_URL is not');
  const auth = env.CERTFLEET_AUTH || null;
  if (auth !== null && auth !== 'development') throw new Error(`CERTFLEET_AUTH must be "development" or unset (got "${auth}")`);
  if (bool(env, 'MQTT_PROVISIONING', false) && !env.BROKER_ADMIN_URL) {
    throw new Error('MQTT_PROVISIONING=true needs BROKER_ADMIN_URL and BROKER_ADMIN_PASSWORD_FILE (certfleet answers provisioning requests as the broker admin; see broker-config --provisioning-port)');
  }
  if (bool(env, 'MQTT_RENEWAL', false) && !env.BROKER_ADMIN_URL) {
    throw new Error('MQTT_RENEWAL=true needs BROKER_ADMIN_URL and BROKER_ADMIN_PASSWORD_FILE (certfleet answers renewals as the broker admin; see broker-config --mqtt-renewal)');
  }
  if (env.BROKER_RABBITMQ_ADMIN_URL && !env.BROKER_RABBITMQ_ADMIN_PASSWORD_FILE) throw new Error('BROKER_RABBITMQ_ADMIN_URL is set but BROKER_RABBITMQ_ADMIN_PASSWORD_FILE is not');
  if (env.BROKER_ADMIN_URL && !env.BROKER_ADMIN_PASSWORD_FILE) throw new Error('BROKER_ADMIN_URL is set but BROKER_ADMIN_PASSWORD_FILE is not');
  const http: HttpLimits = {
    headersTimeoutMs: int(env, 'HTTP_HEADERS_TIMEOUT_MS', 10_000, 100, 600_000),
    requestTimeoutMs: int(env, 'HTTP_REQUEST_TIMEOUT_MS', 30_000, 100, 3_600_000),
    keepAliveTimeoutMs: int(env, 'HTTP_KEEP_ALIVE_TIMEOUT_MS', 5_000, 100, 600_000),
    maxConnections: int(env, 'HTTP_MAX_CONNECTIONS', HTTP_MAX_CONNECTIONS_DEFAULT, 1, 1_000_000),
  };
  if (http.headersTimeoutMs > http.requestTimeoutMs) throw new Error('HTTP_HEADERS_TIMEOUT_MS must not exceed HTTP_REQUEST_TIMEOUT_MS');
  return {
    port,
    host,
    databaseUrl,
    dataDir,
    pgliteTemplatePath: env.CERTFLEET_PGLITE_TEMPLATE ? resolve(env.CERTFLEET_PGLITE_TEMPLATE) : null,
    pgliteSharedBuffers: sharedBuffers(env.CERTFLEET_PGLITE_SHARED_BUFFERS),
    productionMode: Boolean(databaseUrl) || env.NODE_ENV === 'production',
    caCertPath: resolve(env.DEVICE_CA_CERT_PATH || `${dataDir}/pki/device-ca.crt`),
    caKeyPath: resolve(env.DEVICE_CA_KEY_PATH || `${dataDir}/pki/device-ca.key`),
    caKeyPassphraseFile: env.DEVICE_CA_KEY_PASSPHRASE_FILE ? resolve(env.DEVICE_CA_KEY_PASSPHRASE_FILE) : null,
    caKeyPassphrase: env.DEVICE_CA_KEY_PASSPHRASE || null,
    pkcs11: pkcs11Config(env, int(env, 'PKCS11_SESSIONS', 4, 1, 64)),
    caKeys: {
      dir: resolve(env.CA_KEY_DIR || `${dataDir}/pki/cas`),
      modulePath: resolve(env.PKCS11_MODULE_PATH || DEFAULT_PKCS11_MODULE_PATH),
      pinFile: env.PKCS11_PIN_FILE ? resolve(env.PKCS11_PIN_FILE) : null,
      sessions: int(env, 'PKCS11_SESSIONS', 4, 1, 64),
    },
    crlOutputPath: resolve(env.CRL_OUTPUT_PATH || `${dataDir}/pki/device-crl.pem`),
    crlReconcilePath: env.CRL_RECONCILE_PATH ? resolve(env.CRL_RECONCILE_PATH) : null,
    crlRefreshMinutes: int(env, 'CRL_REFRESH_MINUTES', 60, 1, 10_080),
    crlFullRebuildMinutes: int(env, 'CRL_FULL_REBUILD_MINUTES', 60, 0, 10_080),
    brokerFleet: {
      lagAlertSeconds: int(env, 'BROKER_LAG_ALERT_SECONDS', 120, 1, 86_400),
      reportTimeoutSeconds: int(env, 'BROKER_REPORT_TIMEOUT_SECONDS', 300, 5, 86_400),
      largeCrlBytes: int(env, 'BROKER_LARGE_CRL_BYTES', 4 * 1024 * 1024, 0, Number.MAX_SAFE_INTEGER),
      largeCrlReloadIntervalMs: int(env, 'BROKER_LARGE_CRL_RELOAD_INTERVAL_SECONDS', 10, 0, 3_600) * 1000,
    },
    crlValidityHours: int(env, 'CRL_VALIDITY_HOURS', 168, 2, 8_760),
    certExpiryWarningDays: int(env, 'CERT_EXPIRY_WARNING_DAYS', 30, 1, 3650),
    certExpiryHighDays: int(env, 'CERT_EXPIRY_HIGH_DAYS', 7, 1, 3650),
    certExpiryCriticalDays: int(env, 'CERT_EXPIRY_CRITICAL_DAYS', 1, 1, 3650),
    rotationGraceHours: int(env, 'ROTATION_GRACE_HOURS', 24, 1, 720),
    brokerPidFile: env.BROKER_PID_FILE || null,
    brokerReloadCommand: env.BROKER_RELOAD_COMMAND || null,
    brokerAclPath: env.BROKER_ACL_PATH ? resolve(env.BROKER_ACL_PATH) : null,
    brokerAclPermissive: bool(env, 'BROKER_ACL_PERMISSIVE', false),
    brokerGrantsPath: env.BROKER_GRANTS_PATH ? resolve(env.BROKER_GRANTS_PATH) : null,
    brokerCaPath: env.BROKER_CA_PATH ? resolve(env.BROKER_CA_PATH) : null,
    brokerClaimCaPath: env.BROKER_CLAIM_CA_PATH ? resolve(env.BROKER_CLAIM_CA_PATH) : null,
    brokerRabbitmq: env.BROKER_RABBITMQ_ADMIN_URL
      ? {
          url: env.BROKER_RABBITMQ_ADMIN_URL,
          username: env.BROKER_RABBITMQ_ADMIN_USERNAME || 'certfleet-admin',
          passwordFile: resolve(env.BROKER_RABBITMQ_ADMIN_PASSWORD_FILE!),
          vhost: env.BROKER_RABBITMQ_VHOST || '/',
        }
      : null,
    brokerAdmin: env.BROKER_ADMIN_URL
      ? {
          url: env.BROKER_ADMIN_URL,
          username: env.BROKER_ADMIN_USERNAME || 'certfleet-admin',
          passwordFile: resolve(env.BROKER_ADMIN_PASSWORD_FILE!),
          caFile: env.BROKER_ADMIN_CA_FILE ? resolve(env.BROKER_ADMIN_CA_FILE) : null,
        }
      : null,
    publicBaseUrl: publicBaseUrl(env.PUBLIC_BASE_URL || `http://${host.includes(':') ? `[${host}]` : host}:${port}`),
    oidc: oidcIssuer ? { issuer: oidcIssuer, audience: env.OIDC_AUDIENCE || 'certfleet', jwksUrl: env.OIDC_JWKS_URL! } : null,
    developmentAuthExplicit: auth === 'development',
    devTokenMaxTtlSeconds: ttl(env, 'CERTFLEET_DEV_TOKEN_MAX_TTL', 86_400),
    metricsTenantLabels: bool(env, 'METRICS_TENANT_LABELS', false),
    metricsToken: env.METRICS_TOKEN || null,
    http,
    consoleOidc: oidcIssuer && env.OIDC_CLIENT_ID ? { clientId: env.OIDC_CLIENT_ID, scope: env.OIDC_SCOPE || 'openid' } : null,
    logLevel: env.LOG_LEVEL || 'info',
    webhookSecretKey: env.WEBHOOK_SECRET_KEY ? parseSecretKey(env.WEBHOOK_SECRET_KEY) : null,
    webhookSecretKeyPath: `${dataDir}/webhook-secret.key`,
    webhookSecretKeyPrevious: env.WEBHOOK_SECRET_KEY_PREVIOUS ? parseSecretKey(env.WEBHOOK_SECRET_KEY_PREVIOUS, 'WEBHOOK_SECRET_KEY_PREVIOUS') : null,
    webhookAllowPrivateNetworks: bool(env, 'WEBHOOK_ALLOW_PRIVATE_NETWORKS', false),
    issuanceRatePerMinute: int(env, 'ISSUANCE_RATE_PER_MINUTE', 600, 0, 1_000_000),
    issuanceBurst: int(env, 'ISSUANCE_BURST', 100, 1, 100_000),
    apiProcesses: int(env, 'API_PROCESSES', 1, 1, 64),
    keygenWorkers: int(env, 'KEYGEN_WORKERS', Math.max(1, availableParallelism() - 1), 0, 64),
    est: estConfig(env, host),
    descriptors: { reserve: int(env, 'FD_RESERVE', 64, 16, 1_000_000), apiCapSet: isSet(env, 'HTTP_MAX_CONNECTIONS'), estCapSet: isSet(env, 'EST_MAX_CONNECTIONS') },
    mqttRenewal: bool(env, 'MQTT_RENEWAL', false),
    mqttProvisioning: bool(env, 'MQTT_PROVISIONING', false),
    renewalAdmission: {
      maxConcurrent: int(env, 'RENEWAL_MAX_CONCURRENT', 32, 1, 1_000),
      queuePerTenant: int(env, 'RENEWAL_QUEUE_PER_TENANT', 200, 0, 1_000_000),
      maxWaitMs: int(env, 'RENEWAL_QUEUE_WAIT_MS', 10_000, 10, 600_000),
    },
  };
}
