/**
 * Renders a Mosquitto 2.x `mosquitto.conf` for device mutual TLS (pure: no I/O).
 *
 * Measured on Mosquitto 2.0.11 (see docs/broker-sessions.md):
 * - `allow_anonymous false` works with `require_certificate true` + `use_identity_as_username true`:
 *   the certificate's CN becomes the username, so a device is not anonymous. No password is
 *   checked on that listener, and no plugin is called at CONNECT: the session of the same client id
 *   is taken over before any ACL check. So in plugin mode with the CA scope map the device listener
 *   has `use_identity_as_username false` and certfleet_acl's basic-auth callback (which Mosquitto
 *   calls before the takeover) checks the certificate, refuses a CN outside its CA's scope or a
 *   client id naming another device, and sets the CN as username (plugin_opt_device_login).
 * - Mosquitto refuses to start when `crlfile` is missing; on SIGHUP it re-reads the config,
 *   the certificates and the CRL *as the `mosquitto` user*.
 * - Topic access, default deny, in one of two modes. Plugin mode (aclPlugin): certfleet's
 *   certfleet_acl plugin (broker-plugin/certfleet_acl.c), loaded before the dynamic security
 *   plugin, decides from the CN by construction and reads only the tenants' grants file; its
 *   answer for a device is final (Mosquitto runs the ACL callbacks in load order, the acl_file's
 *   last, and the first non-defer answer wins; all deferring = denied). acl_file mode: one block
 *   per registered device (src/broker/acl-sync.ts keeps it); the dynamic security plugin defers
 *   the users it does not know (every device) to it. The dynamic security plugin is only used for
 *   the admin login and its `$CONTROL` API (kicking sessions). No device rule matches a
 *   `$`-topic, so devices cannot reach `$CONTROL`.
 */

import { type AclDevice, type BrokerGrant, assertGrants, deviceAclBlock } from '../domain/broker-acl.ts';
import { isValidId, RESERVED_TENANT_ID } from '../domain/identifiers.ts';
import { PROVISION_ROOT, ADVICE_FILTER, DEVICE_RENEWAL_ACL, RECOVERY_REQUEST_TOPIC, RECOVERY_RESPONSE_FILTER, RECOVERY_USERNAME, REQUEST_FILTER, RESPONSE_FILTER } from '../renewal/renewal-topics.ts';

export interface DynamicSecurityConfig {
  /** Path of mosquitto_dynamic_security.so. */
  pluginPath: string;
  /** The plugin's JSON state file (the plugin rewrites it on every change). */
  configFile: string;
  /** Deprecated place of the acl_file (now MosquittoConfigOptions.aclFile); still honoured. */
  aclFile?: string;
  /** Address of the admin listener (password auth, no client certificate). Default 127.0.0.1. */
  adminHost?: string;
  adminPort: number;
  /** Serve the admin listener over TLS with the server certificate. Default false (loopback only). */
  adminTls?: boolean;
}

/**
 * certfleet's ACL plugin (broker-plugin/certfleet_acl.c): decides every topic access from the
 * username (the certificate CN `tenant/device`) by construction, so the broker's start and reload
 * cost does not grow with the fleet (an acl_file needs one block per device). Loaded before the
 * dynamic security plugin: its answer for a device is final; for the admin it allows the admin's
 * acl_file topics and defers the rest to the dynamic security plugin.
 */
export interface AclPluginConfig {
  /** Path of certfleet_acl.so as the broker sees it. */
  pluginPath: string;
  /** Tenant grants, `<tenant> <access> <filter>` a line (renderGrantsFile); re-read on reload. */
  grantsFile: string;
  adminUsername?: string | null;
  renewalTopics?: boolean;
  /** certfleet's own tenant (the broker canaries): no own topics, no grants. */
  reservedTenant?: string;
  /**
   * The CA scope map (ca-scopes.ts, `<cafile>.scopes`): a certificate's CN counts only within the
   * scope of the CA that signed it (a tenant CA cannot sign for another tenant or the admin).
   */
  caScopesFile?: string;
}

export interface MosquittoConfigOptions {
  /** Address the device listener binds to (a host name binds every address it resolves to). */
  bindAddress: string;
  port?: number;
  /** The Device CA: client certificates must chain to it. */
  deviceCaFile: string;
  certFile: string;
  keyFile: string;
  /**
   * PEM file labelled `X509 CRL`. Must exist when Mosquitto starts. With `crlHashDir`, the
   * placeholder CRL (crl-placeholder.ts): it keeps Mosquitto rebuilding the TLS context at every
   * reload, while the real CRLs are looked up in `crlHashDir`.
   */
  crlFile: string;
  /**
   * The CRL hash folder (`capath`): `<subject hash of a CA>.r0` links to the real CRL file
   * (crl-hash-links.ts), loaded lazily, once per reload, at the first handshake that needs them.
   * Absent: the single `crlfile` layout (the whole CRL file loaded twice per SIGHUP).
   */
  crlHashDir?: string;
  pidFile?: string;
  /** Default `stderr` (unbuffered; `stdout` is block-buffered when not a terminal). */
  logDest?: string[];
  /** Default error, warning, notice, information (connections, reloads, TLS errors). */
  logTypes?: string[];
  /** e.g. `tlsv1.2`; unset = Mosquitto's default (TLS 1.2 and 1.3). */
  tlsVersion?: string;
  /** The acl_file (renderAclFile; certfleet rewrites it, BROKER_ACL_PATH). Without one Mosquitto allows every topic. */
  aclFile?: string;
  /** Optional: dynamic security plugin + admin listener, used to kick connected sessions. */
  dynamicSecurity?: DynamicSecurityConfig;
  /** certfleet's ACL plugin instead of the acl_file (then no acl_file is rendered). */
  aclPlugin?: AclPluginConfig;
  /**
   * Recovery listener (`broker-config --recovery-port`): server TLS only, no client certificate,
   * password login (the dynsec recovery client), the username as client id. Needs dynamicSecurity.
   */
  recovery?: { port: number; bindAddress?: string };
  /**
   * Provisioning listener (`broker-config --provisioning-port`): devices with a claim (factory)
   * certificate ask for their first operational certificate. Its capath holds only the tenants'
   * claim CAs (certfleet keeps it, BROKER_CLAIM_CA_PATH; read at each handshake, unlike a cafile); the certfleet_acl plugin knows a
   * claim client by its certificate's SHA-256, never by its CN. Needs aclPlugin and dynamicSecurity.
   */
  provisioning?: { port: number; bindAddress?: string; claimCaDir: string };
}

export const DEFAULT_MQTTS_PORT = 8883;
export const DEFAULT_ADMIN_USERNAME = 'certfleet-admin';

function quoteCheck(name: string, value: string): string {
  // mosquitto.conf has no quoting: a value runs to the end of the line.
  if (/[\r\n]/.test(value) || value.trim() === '') {
    throw new TypeError(`mosquitto config: ${name} must be a non-empty single line, got ${JSON.stringify(value)}`);
  }
  if (value !== value.trim()) {
    throw new TypeError(`mosquitto config: ${name} must not start or end with whitespace`);
  }
  return value;
}

function portCheck(name: string, port: number): number {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new TypeError(`mosquitto config: ${name} must be a TCP port, got ${port}`);
  }
  return port;
}

export function renderMosquittoConfig(options: MosquittoConfigOptions): string {
  const port = portCheck('port', options.port ?? DEFAULT_MQTTS_PORT);
  const bind = quoteCheck('bindAddress', options.bindAddress);
  const logDest = options.logDest ?? ['stderr'];
  const logTypes = options.logTypes ?? ['error', 'warning', 'notice', 'information'];
  const ds = options.dynamicSecurity;

  const lines: string[] = [
    '# Generated by certfleet (broker-config). Mosquitto 2.x, device mutual TLS.',
    '# Reload (SIGHUP) re-reads this file, the certificates and the CRL as the mosquitto user.',
    '',
    'per_listener_settings false',
    // Devices authenticate with their certificate (use_identity_as_username): they are not
    // anonymous, and nobody else gets in without credentials.
    'allow_anonymous false',
    'persistence false',
  ];
  if (options.pidFile) lines.push(`pid_file ${quoteCheck('pidFile', options.pidFile)}`);
  for (const dest of logDest) lines.push(`log_dest ${quoteCheck('logDest', dest)}`);
  for (const type of logTypes) lines.push(`log_type ${quoteCheck('logTypes', type)}`);
  lines.push('log_timestamp true', 'log_timestamp_format %Y-%m-%dT%H:%M:%S', 'connection_messages true');

  const ap = options.aclPlugin;
  if (ap) {
    lines.push(
      '',
      '# Topic access: certfleet_acl decides from the certificate CN tenant/device, by construction:',
      "# each device its own tenant/<tenant>/device/<device>/# and its tenant's grants (grants file,",
      '# re-read on reload), nothing else. First plugin: its answer for a device is final.',
      `plugin ${quoteCheck('aclPlugin.pluginPath', ap.pluginPath)}`,
      `plugin_opt_grants_file ${quoteCheck('aclPlugin.grantsFile', ap.grantsFile)}`,
    );
    if (ap.adminUsername) {
      const admin = quoteCheck('aclPlugin.adminUsername', ap.adminUsername);
      if (/\s|\//.test(admin)) throw new TypeError('mosquitto config: the admin username must not contain whitespace or "/"');
      lines.push(`plugin_opt_admin_username ${admin}`);
    }
    if (ap.renewalTopics) lines.push('plugin_opt_renewal_topics true');
    if (ap.renewalTopics && options.recovery) lines.push(`plugin_opt_recovery_username ${RECOVERY_USERNAME}`);
    if (options.provisioning) lines.push('plugin_opt_provisioning_topics true');
    lines.push(`plugin_opt_reserved_tenant ${quoteCheck('aclPlugin.reservedTenant', ap.reservedTenant ?? 'certfleet')}`);
    if (ap.caScopesFile) {
      lines.push(
        "# A certificate's CN counts only within its CA's scope (a tenant's own CA signs for that tenant's",
        '# devices only): the CA scope map beside the cafile, rewritten with it, re-read on reload.',
        `plugin_opt_ca_scopes_file ${quoteCheck('aclPlugin.caScopesFile', ap.caScopesFile)}`,
        '# Certificate logins checked at CONNECT, before Mosquitto hands over a session of the same client',
        "# id: a CN outside its CA's scope, or a client id naming another device, is refused (the device",
        '# listener then does not take the identity as username: the plugin sets the CN).',
        'plugin_opt_device_login true',
      );
    }
  }
  if (ds) {
    lines.push(
      '',
      '# Dynamic security plugin: only for the admin login and its $CONTROL API, used to',
      '# disconnect the live sessions of a revoked certificate (see docs/broker-sessions.md).',
      ap
        ? '# ACLs: certfleet_acl above answers first (the admin\'s other topics are deferred to this plugin).'
        : '# ACLs come from acl_file (the plugin would deny every device it does not know).',
      `plugin ${quoteCheck('dynamicSecurity.pluginPath', ds.pluginPath)}`,
      `plugin_opt_config_file ${quoteCheck('dynamicSecurity.configFile', ds.configFile)}`,
    );
  }
  const aclFile = ap ? undefined : (options.aclFile ?? ds?.aclFile);
  if (aclFile) {
    lines.push(
      '',
      '# Topic access: default deny; each device its own tenant/<tenant>/device/<device>/# and its',
      "# tenant's grants (certfleet rewrites this file and reloads the broker).",
      `acl_file ${quoteCheck('aclFile', aclFile)}`,
    );
  }

  lines.push(
    '',
    options.crlHashDir
      ? '# Device listener: mutual TLS, the certificate CN is the username, revocation via the CRLs in capath\n' +
          '# (<CA subject hash>.r0 links to the CRL file, loaded at the first handshake after a reload; the\n' +
          '# crlfile is an empty placeholder of no CA that keeps Mosquitto rebuilding the TLS context at every reload).'
      : '# Device listener: mutual TLS, the certificate CN is the username, revocation via CRL.',
    `listener ${port} ${bind}`,
    `cafile ${quoteCheck('deviceCaFile', options.deviceCaFile)}`,
    ...(options.crlHashDir ? [`capath ${quoteCheck('crlHashDir', options.crlHashDir)}`] : []),
    `certfile ${quoteCheck('certFile', options.certFile)}`,
    `keyfile ${quoteCheck('keyFile', options.keyFile)}`,
    'require_certificate true',
    // With the scope map, certfleet_acl's login (plugin_opt_device_login) sets the CN as username at
    // CONNECT; Mosquitto 2.0 calls no plugin there with use_identity_as_username.
    ap?.caScopesFile ? 'use_identity_as_username false' : 'use_identity_as_username true',
    `crlfile ${quoteCheck('crlFile', options.crlFile)}`,
  );
  if (options.tlsVersion) lines.push(`tls_version ${quoteCheck('tlsVersion', options.tlsVersion)}`);

  if (ds) {
    const adminPort = portCheck('dynamicSecurity.adminPort', ds.adminPort);
    if (adminPort === port) throw new TypeError('mosquitto config: the admin port must differ from the device port');
    lines.push(
      '',
      '# Admin listener: username/password checked by the dynamic security plugin.',
      `listener ${adminPort} ${quoteCheck('dynamicSecurity.adminHost', ds.adminHost ?? '127.0.0.1')}`,
    );
    if (ds.adminTls) {
      lines.push(
        `certfile ${quoteCheck('certFile', options.certFile)}`,
        `keyfile ${quoteCheck('keyFile', options.keyFile)}`,
      );
      if (options.tlsVersion) lines.push(`tls_version ${options.tlsVersion}`);
    }
  }
  if (options.recovery) {
    if (!ds) throw new TypeError('mosquitto config: the recovery listener needs the dynamic security plugin (password login)');
    const recoveryPort = portCheck('recovery.port', options.recovery.port);
    if (recoveryPort === port || recoveryPort === ds.adminPort) throw new TypeError('mosquitto config: the recovery port must differ from the device and admin ports');
    lines.push(
      '',
      '# Recovery listener: devices whose certificate expired (TLS above refuses them) ask for a',
      `# renewal with a signed request on ${RECOVERY_REQUEST_TOPIC}, logged in as ${RECOVERY_USERNAME}`,
      '# (password, checked by the dynamic security plugin). No client certificate; the username is',
      "# the client id, so this login can never take over a device's session (docs/device-renewal.md).",
      `listener ${recoveryPort} ${quoteCheck('recovery.bindAddress', options.recovery.bindAddress ?? bind)}`,
      `certfile ${quoteCheck('certFile', options.certFile)}`,
      `keyfile ${quoteCheck('keyFile', options.keyFile)}`,
      'require_certificate false',
      'use_username_as_clientid true',
    );
    if (options.tlsVersion) lines.push(`tls_version ${options.tlsVersion}`);
  }
  if (options.provisioning) lines.push(...provisioningListener(options, port, bind));
  lines.push('');
  return lines.join('\n');
}

/** The provisioning listener's lines (claim certificates; see MosquittoConfigOptions.provisioning). */
function provisioningListener(options: MosquittoConfigOptions, devicePort: number, bind: string): string[] {
  const p = options.provisioning!;
  if (!options.aclPlugin) throw new TypeError('mosquitto config: the provisioning listener needs the certfleet_acl plugin (it knows claim clients by their certificate)');
  if (!options.dynamicSecurity) throw new TypeError('mosquitto config: the provisioning listener needs the dynamic security plugin (certfleet answers as its admin)');
  const port = portCheck('provisioning.port', p.port);
  if (port === devicePort || port === options.dynamicSecurity.adminPort || port === options.recovery?.port) {
    throw new TypeError('mosquitto config: the provisioning port must differ from the device, admin and recovery ports');
  }
  const lines = [
    '',
    "# Provisioning listener: devices with a claim (factory) certificate of a tenant's claim CA ask",
    `# for their first certificate on ${PROVISION_ROOT}/<sha256 of the claim certificate>/request. Only`,
    '# the claim CAs are trusted here (capath: certfleet keeps it, OpenSSL reads it at each handshake,',
    '# so a new claim CA needs no reload); the CN is NOT the username (a',
    "# manufacturer's CN could name a device): the client logs in as certfleet-claim:<that sha256>,",
    '# which certfleet_acl checks against the certificate, and it is the client id too.',
    `listener ${port} ${quoteCheck('provisioning.bindAddress', p.bindAddress ?? bind)}`,
    `capath ${quoteCheck('provisioning.claimCaDir', p.claimCaDir)}`,
    `certfile ${quoteCheck('certFile', options.certFile)}`,
    `keyfile ${quoteCheck('keyFile', options.keyFile)}`,
    'require_certificate true',
    'use_identity_as_username false',
    'use_username_as_clientid true',
  ];
  if (options.tlsVersion) lines.push(`tls_version ${options.tlsVersion}`);
  return lines;
}

export interface AclFileOptions {
  /** certfleet's broker identity (the dynsec admin): `$CONTROL/dynamic-security/#`, reads device topics, answers renewals. */
  adminUsername?: string | null;
  /**
   * Device-initiated renewal over MQTT: each device may publish only to its own request topic and
   * read only its own response topic (`%u` patterns: a CN has exactly one `/` and no wildcard, so
   * they expand to exact topics); the admin reads every request and answers.
   */
  renewalTopics?: boolean;
  /** Registered devices: one `user <tenant>/<device>` block each (its own subtree + its tenant's grants). */
  devices?: Iterable<AclDevice>;
  /** Tenant-wide grants, by tenant id. */
  grants?: ReadonlyMap<string, readonly BrokerGrant[]>;
  /**
   * `pattern readwrite #`: every client may use every non-`$` topic (tenants are NOT isolated).
   * Only behind `broker-config --permissive-acl`, never with renewalTopics.
   */
  permissive?: boolean;
}

export interface RenderedAcl {
  text: string;
  /** Devices whose blocks were written. */
  devices: number;
  /** Ids that are not valid ids: not written (they get the default: nothing). */
  skipped: string[];
}

/**
 * The acl_file: default deny. Clients get what is listed: unknown users (a device not yet
 * provisioned) only the renewal patterns, registered devices their own `tenant/<T>/device/<D>/#`
 * plus their tenant's grants (src/domain/broker-acl.ts), certfleet's admin its own topics.
 */
export function renderAclFile(options: AclFileOptions): RenderedAcl {
  if (options.permissive && options.renewalTopics) {
    throw new TypeError('mosquitto acl: a permissive ACL (pattern readwrite #) would let every device reach every renewal topic; it cannot be combined with MQTT renewal');
  }
  const lines = [
    '# Generated by certfleet. Read by Mosquitto at start and on every reload (SIGHUP); certfleet',
    '# rewrites it when devices are registered or tenant broker grants change. Default deny.',
    '# A device username is its certificate CN, tenant/device.',
  ];
  if (options.renewalTopics) lines.push('', '# Every device: its own renewal topics only (%u = tenant/device, exact topics).', ...DEVICE_RENEWAL_ACL);
  if (options.permissive) lines.push('', '# PERMISSIVE (broker-config --permissive-acl): every client, every non-$ topic; tenants are not isolated.', 'pattern readwrite #');
  if (options.renewalTopics) {
    lines.push(
      '',
      '# Recovery login (broker-config --recovery-port; a password, no certificate): asks, reads answers, nothing else.',
      `user ${RECOVERY_USERNAME}`,
      `topic write ${RECOVERY_REQUEST_TOPIC}`,
      `topic read ${RECOVERY_RESPONSE_FILTER}`,
    );
  }
  if (options.adminUsername) {
    const admin = quoteCheck('adminUsername', options.adminUsername);
    if (/\s|\//.test(admin)) throw new TypeError('mosquitto acl: adminUsername must not contain whitespace or "/"');
    lines.push('', "# certfleet's broker identity (password login on the admin listener only).", `user ${admin}`, 'topic readwrite $CONTROL/dynamic-security/#', 'topic read tenant/#');
    if (options.renewalTopics) lines.push(`topic read ${REQUEST_FILTER}`, `topic write ${RESPONSE_FILTER}`, `topic read ${RECOVERY_REQUEST_TOPIC}`, `topic write ${RECOVERY_RESPONSE_FILTER}`, `topic write ${ADVICE_FILTER}`);
  }
  const skipped: string[] = [];
  let devices = 0;
  const noGrants: readonly BrokerGrant[] = [];
  lines.push('', '# Registered devices: tenant/<tenant>/device/<device>/# and what the tenant grants.');
  for (const device of options.devices ?? []) {
    const block = deviceAclBlock(device, options.grants?.get(device.tenantId) ?? noGrants);
    if (!block) {
      skipped.push(`${device.tenantId}/${device.deviceId}`.slice(0, 300));
      continue;
    }
    lines.push(...block);
    devices++;
  }
  lines.push('');
  return { text: lines.join('\n'), devices, skipped };
}

/**
 * The grants file certfleet_acl reads: one `<tenant> <access> <filter>` line per tenant grant
 * (filter relative to `tenant/<tenant>/`, validated by assertGrants). Its size follows the number
 * of grants, not of devices. Invalid tenants or grants are left out (reported in `skipped`).
 */
export function renderGrantsFile(grants: ReadonlyMap<string, readonly BrokerGrant[]> | undefined): { text: string; grants: number; skipped: string[] } {
  const lines = [
    '# Generated by certfleet: tenant broker grants for the certfleet_acl broker plugin, re-read on every',
    '# reload (SIGHUP). One line per grant: <tenant> <read|write|readwrite> <filter under tenant/<tenant>/>.',
  ];
  const skipped: string[] = [];
  let count = 0;
  for (const [tenant, list] of [...(grants ?? new Map<string, readonly BrokerGrant[]>()).entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (!isValidId(tenant) || tenant === RESERVED_TENANT_ID) {
      skipped.push(tenant.slice(0, 200));
      continue;
    }
    let valid: BrokerGrant[];
    try {
      valid = assertGrants(list);
    } catch {
      skipped.push(tenant);
      continue;
    }
    for (const g of valid) {
      lines.push(`${tenant} ${g.access} ${g.filter}`);
      count++;
    }
  }
  lines.push('');
  return { text: lines.join('\n'), grants: count, skipped };
}

/** A dynsec password entry: PBKDF2-HMAC-SHA512 over the raw 12-byte salt, 64-byte output, base64. */
export interface DynsecPasswordHash {
  password: string;
  salt: string;
  iterations: number;
}

export interface DynamicSecurityJsonOptions {
  adminUsername: string;
  adminPasswordHash: DynsecPasswordHash;
}

/**
 * The initial dynamic-security.json: the same shape `mosquitto_ctrl dynsec init` writes
 * (an admin client with an admin role). The ACLs that matter for devices live in the acl_file.
 */
export function renderDynamicSecurityJson(options: DynamicSecurityJsonOptions): string {
  const admin = quoteCheck('adminUsername', options.adminUsername);
  const acl = (acltype: string, topic: string) => ({ acltype, topic, allow: true });
  const doc = {
    clients: [
      {
        username: admin,
        textName: 'certfleet dynsec admin (kicks sessions of revoked certificates)',
        password: options.adminPasswordHash.password,
        salt: options.adminPasswordHash.salt,
        iterations: options.adminPasswordHash.iterations,
        roles: [{ rolename: 'admin' }],
      },
    ],
    roles: [
      {
        rolename: 'admin',
        acls: [
          acl('publishClientSend', '$CONTROL/dynamic-security/#'),
          acl('publishClientReceive', '$CONTROL/dynamic-security/#'),
          acl('subscribePattern', '$CONTROL/dynamic-security/#'),
          acl('publishClientReceive', '$SYS/#'),
          acl('subscribePattern', '$SYS/#'),
          acl('publishClientReceive', '#'),
          acl('subscribePattern', '#'),
          acl('unsubscribePattern', '#'),
        ],
      },
    ],
    defaultACLAccess: {
      publishClientSend: false,
      publishClientReceive: true,
      subscribe: false,
      unsubscribe: true,
    },
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}
