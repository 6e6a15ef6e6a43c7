/** A registered device as the API shows it. */
export interface DeviceRecord {
  tenant_id: string;
  device_id: string;
  site_id: string | null;
  status: string;
  created_at: string;
  updated_at: string;
}

/** A device's certificates at a glance: ACTIVE if one is, else EXPIRED, else REVOKED; NONE without any. */
export const DEVICE_CERTIFICATE_STATUSES = ['ACTIVE', 'EXPIRED', 'REVOKED', 'NONE'] as const;
export type DeviceCertificateStatus = (typeof DEVICE_CERTIFICATE_STATUSES)[number];

/** A filtered device list counts its total up to this many (then says "at least"): counting costs a probe per device. */
export const DEVICE_TOTAL_CAP = 1000;

export const DEVICE_SORTS = ['device_id', 'expiry'] as const;
export type DeviceSort = (typeof DEVICE_SORTS)[number];

/** A device in a list: its record and its certificates' state. */
export interface DeviceSummary extends DeviceRecord {
  certificate_status: DeviceCertificateStatus;
  /** The soonest not_after of its ACTIVE certificates. */
  next_expiry: string | null;
  active_certificates: number;
  rotation_pending: boolean;
}

/** The next id after every id starting with `prefix`, in byte order (device ids are ASCII). */
export const prefixUpperBound = (prefix: string) => prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
