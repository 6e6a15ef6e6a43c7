/** A registered device as the API shows it. */
export interface DeviceRecord {
  tenant_id: string;
  device_id: string;
  site_id: string | null;
  status: string;
  created_at: string;
  updated_at: string;
}
