import type { DeviceRecord } from '../domain/device.ts';
import { CUSTOMER } from './client/api-client.ts';
import { clientFromFlags } from './client/credentials.ts';
import { clientFlags, pageFlags, positiveInt, str } from './client-flags.ts';
import { details, plural, print, relativeTime, table } from './output.ts';
import type { GroupSpec } from './spec.ts';

interface DevicePage {
  devices: DeviceRecord[];
  total: number;
  next_cursor: string | null;
}

const deviceDetails = (d: DeviceRecord) =>
  details([
    ['device', d.device_id],
    ['tenant', d.tenant_id],
    ['site', d.site_id],
    ['status', d.status],
    ['created', `${d.created_at} (${relativeTime(d.created_at)})`],
  ]);

export const devicesGroup: GroupSpec = {
  summary: 'register, list and show devices',
  subcommands: {
    add: {
      summary: 'register a device',
      args: ['DEVICE_ID'],
      flags: { ...clientFlags, site: { type: 'string', value: 'SITE', help: 'site the device belongs to' } },
      example: 'certfleet devices add DEVICE-001 --site plant-7',
      async run(flags, [deviceId]) {
        const api = await clientFromFlags(flags);
        const { device } = await api.post<{ device: DeviceRecord }>(`${CUSTOMER}/devices`, { device_id: deviceId, site_id: str(flags.site) ?? null });
        print(flags, `registered ${device.device_id}\n${deviceDetails(device)}`, { device });
        return 0;
      },
    },
    list: {
      summary: "list the tenant's devices",
      flags: { ...clientFlags, ...pageFlags },
      example: 'certfleet devices list --limit 20',
      async run(flags) {
        const api = await clientFromFlags(flags);
        const page = await api.get<DevicePage>(`${CUSTOMER}/devices`, { limit: positiveInt(flags.limit, 'limit', 100, 1000), cursor: str(flags.cursor) });
        const rows = page.devices.map((d) => [d.device_id, d.site_id, d.status, relativeTime(d.created_at)]);
        const more = page.next_cursor ? `\n${page.devices.length} of ${page.total}; next page: --cursor ${page.next_cursor}` : `\n${plural(page.total, 'device')}`;
        print(flags, table(['device', 'site', 'status', 'created'], rows) + more, page);
        return 0;
      },
    },
    show: {
      summary: 'show one device',
      args: ['DEVICE_ID'],
      flags: { ...clientFlags },
      example: 'certfleet devices show DEVICE-001',
      async run(flags, [deviceId]) {
        const api = await clientFromFlags(flags);
        const { device } = await api.get<{ device: DeviceRecord }>(`${CUSTOMER}/devices/${encodeURIComponent(deviceId)}`);
        print(flags, deviceDetails(device), { device });
        return 0;
      },
    },
  },
};
