/**
 * The MQTT renewal topics. A device (username = its certificate CN, `tenant/device`) may publish
 * only to its own request topic and read only its own response topic (broker ACL, `%u`).
 */
export const RENEWAL_ROOT = 'certfleet/renew';
export const requestTopic = (commonName: string) => `${RENEWAL_ROOT}/${commonName}/request`;
export const responseTopic = (commonName: string) => `${RENEWAL_ROOT}/${commonName}/response`;
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

/** acl_file lines for devices: their own renewal topics, nothing of another device's. */
export const DEVICE_RENEWAL_ACL = [`pattern write ${requestTopic('%u')}`, `pattern read ${responseTopic('%u')}`];

