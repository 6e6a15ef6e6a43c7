/** The file names of the broker folder written by writeBrokerConfig. */
export const SERVER_CA_FILE = 'server-ca.crt';
/** Kept (0600, never given to the broker) so that a renewal keeps devices' combined-ca.crt valid. */
export const SERVER_CA_KEY_FILE = 'server-ca.key';
export const SERVER_CERT_FILE = 'server.crt';
export const SERVER_KEY_FILE = 'server.key';
export const DEVICE_CA_FILE = 'device-ca.crt';
export const COMBINED_CA_FILE = 'combined-ca.crt';
export const CONFIG_FILE = 'mosquitto.conf';
export const RENDER_OPTIONS_FILE = 'mosquitto-config.json';
export const DYNSEC_FILE = 'dynamic-security.json';
export const ACL_FILE = 'acl';
/** The certfleet_acl plugin's tenant grants (plugin mode, instead of ACL_FILE). */
export const GRANTS_FILE = 'grants';
/** Where certfleet_acl.so is looked for when `broker-config --acl-plugin` is not given. */
export const ACL_PLUGIN_CANDIDATES = ['/usr/lib/mosquitto/certfleet_acl.so', '/usr/local/lib/mosquitto/certfleet_acl.so', '/mosquitto/plugins/certfleet_acl.so'];
export const ADMIN_PASSWORD_FILE = 'dynsec-admin.password';
/** The shared recovery login's password (broker-config --recovery-port). */
export const RECOVERY_PASSWORD_FILE = 'recovery.password';
/** The provisioning listener's capath: every tenant's claim CAs, `<subject hash>.<n>` (broker-config --provisioning-port; BROKER_CLAIM_CA_PATH). */
export const CLAIM_CA_DIR = 'claim-cas';
/** The device listener's placeholder `crlfile` in the CRL hash folder layout (crl-placeholder.ts). */
export const CRL_PLACEHOLDER_FILE = 'crl-placeholder.pem';
