import { ALERT_STATUSES, ALERT_TYPES, type AlertRecord } from '../domain/alert.ts';
import type { ApiClient } from './client/api-client.ts';
import { CUSTOMER } from './client/api-client.ts';
import { clientFromFlags } from './client/credentials.ts';
import { clientFlags, intCheck, pageFlags, positiveInt, str } from './client-flags.ts';
import { details, plural, print, relativeTime, table } from './output.ts';
import type { Flags, FlagSpec, GroupSpec } from './spec.ts';

const operatorFlag: FlagSpec = { type: 'boolean', help: "every tenant's alerts (needs an operator token)" };
const base = (flags: Flags) => (flags.operator ? '/api/v1/operator/alerts' : `${CUSTOMER}/alerts`);

const alertDetails = (a: AlertRecord) =>
  details([
    ['id', a.id],
    ['type', a.alert_type],
    ['severity', a.severity],
    ['status', a.status],
    ['tenant', a.tenant_id],
    ['device', a.device_id],
    ['summary', a.summary],
    ['opened', `${a.created_at} (${relativeTime(a.created_at)})`],
    ['acknowledged', a.acknowledged_at ? `${relativeTime(a.acknowledged_at)} by ${a.acknowledged_by}` : null],
    ['closed', a.closed_at ? `${relativeTime(a.closed_at)} (${a.close_reason})` : null],
  ]);

async function change(api: ApiClient, flags: Flags, id: string, action: 'acknowledge' | 'close') {
  const { alert } = await api.post<{ alert: AlertRecord }>(`${base(flags)}/${encodeURIComponent(id)}/${action}`);
  print(flags, alertDetails(alert), { alert });
  return 0;
}

export const alertsGroup: GroupSpec = {
  summary: 'list, acknowledge and close alerts',
  subcommands: {
    list: {
      summary: 'alerts, newest first',
      flags: {
        ...clientFlags,
        status: { type: 'string', value: 'STATUS', help: 'OPEN, ACKNOWLEDGED or CLOSED', choices: ALERT_STATUSES },
        type: { type: 'string', value: 'TYPE', help: 'CERT_EXPIRING, CERT_EXPIRED; with --operator also the system alerts CRL_STALE, BROKER_RELOAD_FAILING, CA_EXPIRING', choices: ALERT_TYPES },
        device: { type: 'string', value: 'DEVICE_ID', help: "only this device's alerts" },
        'min-severity': { type: 'string', value: 'N', help: 'severity at least N (1-5)', check: intCheck(1, 5) },
        operator: operatorFlag,
        tenant: { type: 'string', value: 'TENANT', help: 'with --operator: only this tenant (__system__ for system alerts)' },
        ...pageFlags,
      },
      example: 'certfleet alerts list --status OPEN --min-severity 4',
      async run(flags) {
        const api = await clientFromFlags(flags);
        const page = await api.get<{ alerts: AlertRecord[]; total: number; next_cursor: string | null }>(base(flags), {
          status: str(flags.status)?.toUpperCase(),
          type: str(flags.type)?.toUpperCase(),
          device_id: str(flags.device),
          min_severity: flags['min-severity'] === undefined ? undefined : positiveInt(flags['min-severity'], 'min-severity', 1, 5),
          tenant_id: str(flags.tenant),
          limit: positiveInt(flags.limit, 'limit', 100, 1000),
          cursor: str(flags.cursor),
        });
        const rows = page.alerts.map((a) => [a.id, a.severity, a.status, a.alert_type, ...(flags.operator ? [a.tenant_id] : []), a.device_id, relativeTime(a.updated_at), a.summary]);
        const headers = ['id', 'sev', 'status', 'type', ...(flags.operator ? ['tenant'] : []), 'device', 'updated', 'summary'];
        const more = page.next_cursor ? `\n${page.alerts.length} of ${page.total}; next page: --cursor ${page.next_cursor}` : `\n${plural(page.total, 'alert')}`;
        print(flags, table(headers, rows) + more, page);
        return 0;
      },
    },
    ack: {
      summary: 'acknowledge an open alert (an escalation opens it again)',
      args: ['ALERT_ID'],
      flags: { ...clientFlags, operator: operatorFlag },
      example: 'certfleet alerts ack 17',
      run: async (flags, [id]) => change(await clientFromFlags(flags), flags, id, 'acknowledge'),
    },
    close: {
      summary: 'close an alert (not raised again for the same certificate until it escalates)',
      args: ['ALERT_ID'],
      flags: { ...clientFlags, operator: operatorFlag },
      example: 'certfleet alerts close 17',
      run: async (flags, [id]) => change(await clientFromFlags(flags), flags, id, 'close'),
    },
  },
};
