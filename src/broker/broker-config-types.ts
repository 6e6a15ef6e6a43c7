/** The options and results of writeBrokerConfig (its own module: dynamic-security.ts needs them too, without an import cycle). */
import type { AclDevice, BrokerGrant } from '../domain/broker-acl.ts';
import type { MosquittoConfigOptions } from './mosquitto-config.ts';
import type { SuppliedServerCertificate } from './server-pki.ts';

export interface BrokerAclOptions {
  /** Default `<outDir>/acl`. certfleet rewrites it (BROKER_ACL_PATH). */
  path?: string;
  /** The registered devices at the time (certfleet keeps the file in step afterwards). */
  devices?: AclDevice[];
  grants?: ReadonlyMap<string, readonly BrokerGrant[]>;
  /** `pattern readwrite #` (tenants NOT isolated): only `broker-config --permissive-acl`, never with renewal topics. */
  permissive?: boolean;
  /** Leave an existing file as it is (the devices could not be read; certfleet rewrites it at start). */
  keepExisting?: boolean;
}

/** certfleet's ACL plugin (broker-plugin/certfleet_acl.c) instead of the acl_file. */
export interface AclPluginOptions {
  /** certfleet_acl.so as the broker sees it. */
  pluginPath: string;
  /** Default `<outDir>/grants`. certfleet rewrites it (BROKER_GRANTS_PATH). */
  grantsPath?: string;
}

export interface DynamicSecurityOptions {
  /** Admin password; when omitted a random one is generated into `dynsec-admin.password` (0600). */
  adminPassword?: string;
  /** Default `certfleet-admin`. Must not contain `/` (device CNs always do), so no device can be it. */
  adminUsername?: string;
  /** Default 127.0.0.1. */
  adminHost?: string;
  /** Default port + 1. */
  adminPort?: number;
  /** Admin listener over TLS with the server certificate (clients then need server-ca.crt). */
  adminTls?: boolean;
  /** Default: the first mosquitto_dynamic_security.so found in the usual library folders. */
  pluginPath?: string;
  /** Devices renew over MQTT (certfleet/renew/<CN>/request|response), answered by certfleet as the admin user. */
  renewalTopics?: boolean;
  /**
   * Recovery listener for devices whose certificate expired (needs renewalTopics): its port, and
   * the password of the shared recovery login (default: generated into `recovery.password`, 0600).
   */
  recovery?: { port: number; bindAddress?: string; password?: string };
}

export interface WriteBrokerConfigOptions {
  outDir: string;
  /** Name devices connect to: server certificate CN/SAN. Default `localhost`. */
  host?: string;
  /** Device listener port. Default 8883. */
  port?: number;
  /** Address the listener binds to. Default: `host`. */
  bindAddress?: string;
  deviceCaCertPem: string;
  /** CRL file certfleet's CRL publisher writes (CRL_OUTPUT_PATH). */
  crlPath: string;
  /**
   * How the device listener reads it. 'capath' (default): `crlfile` is a placeholder CRL and
   * `capath` the folder `<crlPath>.hash` of `<CA subject hash>.r0` links to the CRL file, loaded
   * lazily once per reload (src/broker/crl-hash-links.ts). 'crlfile': `crlfile <crlPath>`, loaded
   * twice per SIGHUP (the layout before issue 22; its hash folder is removed).
   */
  crlLayout?: 'capath' | 'crlfile';
  /** Default `<outDir>/run/mosquitto.pid`. */
  pidFile?: string;
  logDest?: string[];
  logTypes?: string[];
  tlsVersion?: string;
  /** Server certificate validity, at most (and by default) 397 days. The server CA is valid 10 years. */
  serverCertDays?: number;
  /** Issue a new server certificate even if the current one is still valid (from the kept server CA when there is one). */
  renewServerCertificate?: boolean;
  /**
   * Where the server CA key is kept (default: `outDir`). Give a folder the broker does not mount:
   * the broker never needs that key. A key an earlier run left in `outDir` is moved there.
   */
  serverCaKeyDir?: string;
  /** Use the operator's own server certificate instead of certfleet's server CA. */
  serverCertificate?: SuppliedServerCertificate;
  /** The user Mosquitto switches to when started as root: a name, or `UID:GID`. Default `mosquitto`. */
  brokerUser?: string;
  dynamicSecurity?: DynamicSecurityOptions;
  /** The acl_file (written unless aclPlugin: default deny). `acl.grants` also fill the plugin's grants file. */
  acl?: BrokerAclOptions;
  /** Topic access by certfleet's ACL plugin (no acl_file; cost independent of the fleet size). */
  aclPlugin?: AclPluginOptions;
  /**
   * MQTT provisioning with claim (factory) certificates: a listener on `port` whose capath
   * (`claim-cas/`) holds `claimCaPems` (every tenant's claim CAs at the time; certfleet rewrites
   * it afterwards, BROKER_CLAIM_CA_PATH). Needs aclPlugin and dynamicSecurity.
   */
  provisioning?: { port: number; bindAddress?: string; claimCaPems: readonly string[] };
  now?: Date;
}

export interface BrokerConfigFiles {
  config: string;
  /** The render options, so tools (and the test harness) can re-render with other ports. */
  renderOptions: string;
  serverCaCert: string;
  serverCert: string;
  serverKey: string;
  deviceCaCert: string;
  combinedCa: string;
  crl: string;
  /** The CRL hash folder (capath layout): `<crl>.hash`. */
  crlHashDir?: string;
  /** The placeholder `crlfile` (capath layout). */
  crlPlaceholder?: string;
  pidFile: string;
  dynsecConfig?: string;
  /** The acl_file (acl_file mode): BROKER_ACL_PATH. */
  aclFile?: string;
  /** The ACL plugin's grants file (plugin mode): BROKER_GRANTS_PATH. */
  grantsFile?: string;
  /** The CA scope map beside the device cafile (plugin mode): `<deviceCaCert>.scopes` (ca-scopes.ts). */
  caScopes?: string;
  adminPasswordFile?: string;
  /** The recovery login's password (broker-config --recovery-port): it goes into device firmware. */
  recoveryPasswordFile?: string;
  /** The provisioning listener's capath, the tenants' claim CAs (broker-config --provisioning-port): BROKER_CLAIM_CA_PATH. */
  claimCaDir?: string;
}

export interface BrokerConfigResult {
  /** What was done, one human-readable line each (ownership changes, warnings). */
  lines: string[];
  files: BrokerConfigFiles;
  host: string;
  port: number;
  renderOptions: MosquittoConfigOptions;
  dynamicSecurity?: { adminUsername: string; adminHost: string; adminPort: number; adminTls: boolean; url: string };
  /** The recovery listener, when configured. */
  recovery?: { port: number; username: string; passwordFile: string };
  /** The provisioning listener, when configured. */
  provisioning?: { port: number; claimCaDir: string; claimCas: number };
}

