import { AppError } from '../domain/errors.ts';
import { CERTIFICATE_STATUSES, KEY_TYPES, MAX_VALIDITY_DAYS, ROTATION_FILTERS, type CertificateStatus, type RotationFilter } from '../domain/certificate.ts';
import { DEVICE_CERTIFICATE_STATUSES, DEVICE_SORTS, type DeviceCertificateStatus, type DeviceSort } from '../domain/device.ts';

/** JSON schemas shared by routes (they also feed the OpenAPI document at /docs). */
export const deviceIdParam = {
  type: 'object',
  required: ['device_id'],
  properties: { device_id: { type: 'string', minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]*$' } },
} as const;

export const certificateIdParam = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'integer', minimum: 1, maximum: 9007199254740991 } },
} as const;

/**
 * The body of a route that takes none: absent, `{}` or null. Anything else (an array, a
 * string, unknown fields) is a validation error rather than silently ignored.
 */
export const noBody = { type: ['object', 'null'], additionalProperties: false, properties: {} } as const;

export const validityDays = { type: 'integer', minimum: 1, maximum: MAX_VALIDITY_DAYS, description: "default: the tenant's renewal policy (validity_days, 365 unless changed)" } as const;
export const keyType = { type: 'string', enum: [...KEY_TYPES] } as const;
export const pemString = { type: 'string', minLength: 1, maxLength: 65_536 } as const;

export const pageQuery = {
  limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
  cursor: { type: 'string', maxLength: 300 },
} as const;

/** GET /devices (customer and operator): search, filters and sort. */
export const deviceListQuery = {
  ...pageQuery,
  id_prefix: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$', description: 'devices whose id starts with this' },
  site_id: { type: 'string', maxLength: 128 },
  certificate_status: { type: 'string', enum: [...DEVICE_CERTIFICATE_STATUSES], description: "the device's certificates: ACTIVE if one is, else EXPIRED, else REVOKED; NONE without any" },
  expiring_within_days: { type: 'integer', minimum: 0, maximum: 36500, description: 'an ACTIVE certificate expires within this many days' },
  rotation: { type: 'string', enum: ['pending', 'none'], description: 'pending: a rotation waits for confirmation' },
  sort: { type: 'string', enum: [...DEVICE_SORTS], default: 'device_id', description: 'device_id (byte order) or expiry: the soonest ACTIVE certificate first (devices without one are left out)' },
  ca_id: { type: 'string', pattern: '^ca_[0-9a-f]{1,32}$', description: 'devices with an ACTIVE certificate signed by this CA (a rollover: who is still on the old CA)' },
} as const;

export interface DeviceListQuerystring {
  limit: number;
  cursor?: string;
  id_prefix?: string;
  site_id?: string;
  certificate_status?: DeviceCertificateStatus;
  expiring_within_days?: number;
  rotation?: 'pending' | 'none';
  sort?: DeviceSort;
  ca_id?: string;
}

export const toListDevicesInput = (q: DeviceListQuerystring) => ({
  limit: q.limit,
  cursor: q.cursor,
  idPrefix: q.id_prefix,
  siteId: q.site_id,
  certificateStatus: q.certificate_status,
  expiringWithinDays: q.expiring_within_days,
  rotation: q.rotation,
  sort: q.sort,
  caId: q.ca_id,
});

/** The query of GET /certificates (tenant and operator routes). */
export interface CertificateListQuerystring {
  device_id?: string;
  status?: CertificateStatus;
  expiring_within_days?: number;
  rotation?: RotationFilter;
  ca_id?: string;
  limit: number;
  cursor?: string;
  tenant_id?: string;
}

/** The certificate list's filters and page, as the use case takes them (the tenant is the route's to decide). */
export const toListCertificatesInput = (q: CertificateListQuerystring) => ({
  deviceId: q.device_id,
  status: q.status,
  expiringWithinDays: q.expiring_within_days,
  caId: q.ca_id,
  rotation: q.rotation,
  limit: q.limit,
  cursor: certificateCursor(q.cursor),
});

/** OpenAPI description of a keyset-paged list's answer. */
export const keysetListDescription =
  'Keyset pages: pass `next_cursor` as `cursor` for the next page (null on the last); a page costs the same at any depth. ' +
  '`total` is the exact number of items matching the filters when this page was read (every page, in the same snapshot as its items), ' +
  'so it changes between pages when items are added or change status meanwhile.';

export const certificateListQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    device_id: { type: 'string', maxLength: 128 },
    status: { type: 'string', enum: [...CERTIFICATE_STATUSES] },
    expiring_within_days: { type: 'integer', minimum: 0, maximum: 36500 },
    ca_id: { type: 'string', pattern: '^ca_[0-9a-f]{1,32}$', description: 'only certificates signed by this CA (rotate-expiring --issuer)' },
    rotation: {
      type: 'string',
      enum: [...ROTATION_FILTERS],
      description: 'pending: old or new certificates of a pending rotation; none: the others (bulk tools skip devices mid-rotation)',
    },
    tenant_id: { type: 'string', maxLength: 128 },
    ...pageQuery,
  },
} as const;

export const certificateCursor = (cursor: string | undefined): number | undefined => {
  if (cursor === undefined) return undefined;
  const n = Number(cursor);
  if (!Number.isSafeInteger(n) || n < 1) throw new AppError('VALIDATION_FAILED', 'querystring.cursor is not a cursor this API returned');
  return n;
};
