import { AppError } from './errors.ts';

/**
 * Device and tenant ids end up in a certificate CN (`tenant/device`) and in MQTT
 * topics, so they are kept to a conservative alphabet.
 */
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

export function assertDeviceId(id: string): string {
  if (!ID_PATTERN.test(id)) {
    throw new AppError(
      'INVALID_DEVICE_ID',
      'device_id must be 1 to 128 characters: letters, digits, and . _ : - (not first)',
      { device_id: id.slice(0, 200) },
    );
  }
  return id;
}

export const isValidTenantId = (id: string): boolean => ID_PATTERN.test(id);
export const isValidId = (id: string): boolean => ID_PATTERN.test(id);

/**
 * Ids refused for new tenants' devices and for devices (compared case-insensitively): the first
 * topic level certfleet keeps for itself (`certfleet/renew/...`, `certfleet/provision/...`).
 * Device topics cannot reach certfleet's by construction (every device grant starts with
 * `tenant/`, renewal grants expand to exact topics); this refusal is defence in depth, so that
 * no CN ever reads like one of certfleet's topic prefixes.
 */
export const RESERVED_IDS: readonly string[] = ['certfleet'];

export const isReservedId = (id: string): boolean => RESERVED_IDS.includes(id.toLowerCase());

/** Refuses a reserved tenant or device id with RESERVED_ID (422). */
export function assertNotReserved(tenantId: string, deviceId: string): void {
  for (const [field, id] of [['tenant_id', tenantId], ['device_id', deviceId]] as const) {
    if (isReservedId(id)) {
      throw new AppError('RESERVED_ID', `${field} "${id}" is reserved (certfleet's own MQTT topics live under it); choose another id`, {
        [field]: id,
        reserved_ids: [...RESERVED_IDS],
      });
    }
  }
}

/**
 * The tenant id certfleet keeps for itself: the broker canaries are its devices (CN
 * `certfleet/canary.<node>.valid|revoked`), so no device CN or topic `tenant/certfleet/...` of a
 * customer can ever be the same. Tokens naming it are refused.
 */
export const RESERVED_TENANT_ID = 'certfleet';

/** A broker node's name (`--node`): short, so the canaries' CN `certfleet/canary.<node>.revoked` fits in 64 characters. */
const NODE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$/;
export const isValidBrokerNodeName = (name: string): boolean => NODE_PATTERN.test(name);

export const commonNameFor = (tenantId: string, deviceId: string): string => `${tenantId}/${deviceId}`;

/** RFC 5280 upper bound (ub-common-name) on the subject CN `tenant/device`. */
export const MAX_COMMON_NAME_LENGTH = 64;

/** The CN of this tenant's device must fit in 64 characters; names the limit when it does not. */
export function assertCommonNameFits(tenantId: string, deviceId: string): void {
  const length = commonNameFor(tenantId, deviceId).length;
  if (length <= MAX_COMMON_NAME_LENGTH) return;
  const maxDeviceId = Math.max(0, MAX_COMMON_NAME_LENGTH - tenantId.length - 1);
  throw new AppError(
    'INVALID_DEVICE_ID',
    `the certificate subject CN "tenant/device" would be ${length} characters; RFC 5280 limits it to ${MAX_COMMON_NAME_LENGTH}, ` +
      `so in this tenant device_id can have at most ${maxDeviceId} characters`,
    { device_id: deviceId.slice(0, 200), max_common_name_length: MAX_COMMON_NAME_LENGTH, max_device_id_length: maxDeviceId },
  );
}
