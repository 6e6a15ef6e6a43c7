/**
 * The MQTT renewal topics. A device (username = its certificate CN, `tenant/device`) may publish
 * only to its own request topic and read only its own response topic (broker ACL, `%u`).
 */
export const RENEWAL_ROOT = 'certfleet/renew';
export const requestTopic = (commonName: string) => `${RENEWAL_ROOT}/${commonName}/request`;
export const responseTopic = (commonName: string) => `${RENEWAL_ROOT}/${commonName}/response`;
/** Retained renewal advice for one device (certfleet writes, only that device reads). */
export const adviceTopic = (commonName: string) => `${RENEWAL_ROOT}/${commonName}/advice`;
export const ADVICE_FILTER = `${RENEWAL_ROOT}/+/+/advice`;
/** Every device's request topic (a CN has two levels). */
export const REQUEST_FILTER = `${RENEWAL_ROOT}/+/+/request`;
export const RESPONSE_FILTER = `${RENEWAL_ROOT}/+/+/response`;

/** The CN of a request topic, or null when the topic is not one. */
export function commonNameOfRequestTopic(topic: string): string | null {
  const prefix = `${RENEWAL_ROOT}/`;
  const suffix = '/request';
  if (!topic.startsWith(prefix) || !topic.endsWith(suffix)) return null;
  const cn = topic.slice(prefix.length, -suffix.length);
  return cn.split('/').length === 2 ? cn : null;
}

/**
 * Recovery over MQTT (a device whose certificate expired: the broker's mutual TLS refuses it).
 * It connects to the recovery listener (`broker-config --recovery-port`: server TLS only) with
 * the shared recovery credential, publishes a signed request on RECOVERY_REQUEST_TOPIC and reads
 * the answer on `certfleet/recover/response/<request_id>`. The credential opens only these two
 * topics; who the device is, and that it holds the key, is proven by the request itself.
 */
export const RECOVERY_USERNAME = 'certfleet-recovery';
export const RECOVERY_REQUEST_TOPIC = 'certfleet/recover/request';
export const recoveryResponseTopic = (requestId: string) => `certfleet/recover/response/${requestId}`;
export const RECOVERY_RESPONSE_FILTER = 'certfleet/recover/response/+';

/** acl_file lines for devices: their own renewal topics, nothing of another device's. */
export const DEVICE_RENEWAL_ACL = [`pattern write ${requestTopic('%u')}`, `pattern read ${responseTopic('%u')}`, `pattern read ${adviceTopic('%u')}`];


/**
 * MQTT provisioning with a claim (factory) certificate, on the provisioning listener
 * (`broker-config --provisioning-port`: trusts only the tenants' claim CAs). A claim client is
 * known by the SHA-256 of its claim certificate (DER, lower-case hex), never by its CN (chosen by
 * the manufacturer: it may equal a device CN or another manufacturer's): it logs in as
 * `certfleet-claim:<sha256>` (the certfleet_acl plugin checks the digest against the TLS
 * certificate and uses it as client id) and may only publish its own request topic and read its
 * own answer topic.
 */
export const PROVISION_ROOT = 'certfleet/provision';
export const CLAIM_USERNAME_PREFIX = 'certfleet-claim:';
export const provisionRequestTopic = (claimSha256: string) => `${PROVISION_ROOT}/${claimSha256}/request`;
export const provisionResponseTopic = (claimSha256: string) => `${PROVISION_ROOT}/${claimSha256}/response`;
export const PROVISION_REQUEST_FILTER = `${PROVISION_ROOT}/+/request`;
export const PROVISION_RESPONSE_FILTER = `${PROVISION_ROOT}/+/response`;

/** The claim certificate digest of a provisioning request topic, or null when the topic is not one. */
export function claimDigestOfRequestTopic(topic: string): string | null {
  const match = /^certfleet\/provision\/([0-9a-f]{64})\/request$/.exec(topic);
  return match ? match[1]! : null;
}
