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

export const commonNameFor = (tenantId: string, deviceId: string): string => `${tenantId}/${deviceId}`;
