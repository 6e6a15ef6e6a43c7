import type { WebhookRecord } from '../domain/webhook.ts';
import { CUSTOMER } from './client/api-client.ts';
import { clientFromFlags } from './client/credentials.ts';
import { clientFlags, intCheck, str } from './client-flags.ts';
import { details, print, table } from './output.ts';
import type { Flags, FlagSpec, GroupSpec } from './spec.ts';

const operatorFlag: FlagSpec = { type: 'boolean', help: "the operators' endpoints, which receive the system alerts (needs an operator token)" };
const base = (flags: Flags) => (flags.operator ? '/api/v1/operator/notification-webhooks' : `${CUSTOMER}/notification-webhooks`);

export const webhooksGroup: GroupSpec = {
  summary: 'alert webhooks, and the stored webhook secrets',
  subcommands: {
    list: {
      summary: 'the webhook endpoints (without secrets)',
      flags: { ...clientFlags, operator: operatorFlag },
      example: 'certfleet webhooks list --operator',
      async run(flags) {
        const api = await clientFromFlags(flags);
        const page = await api.get<{ webhooks: WebhookRecord[] }>(base(flags));
        const rows = page.webhooks.map((w) => [w.id, w.enabled ? 'yes' : 'no', w.url, w.description ?? '']);
        print(flags, table(['id', 'enabled', 'url', 'description'], rows), page);
        return 0;
      },
    },
    add: {
      summary: 'register an endpoint; prints its signing secret, shown this once',
      args: ['URL'],
      flags: { ...clientFlags, operator: operatorFlag, description: { type: 'string', value: 'TEXT', help: 'what it is for' } },
      example: 'certfleet webhooks add https://oncall.example.com/certfleet --operator --description pager',
      async run(flags, [url]) {
        const api = await clientFromFlags(flags);
        const created = await api.post<{ webhook: WebhookRecord; secret: string; warning: string }>(base(flags), { url, ...(str(flags.description) ? { description: str(flags.description) } : {}) });
        print(flags, `${details([['id', created.webhook.id], ['url', created.webhook.url], ['tenant', created.webhook.tenant_id], ['secret', created.secret]])}\n${created.warning}`, created);
        return 0;
      },
    },
    rekey: {
      summary: 're-encrypt every stored webhook secret under WEBHOOK_SECRET_KEY, bound to its tenant and webhook',
      flags: {
        json: { type: 'boolean', help: 'print JSON' },
        batch: { type: 'string', value: 'N', help: 'rows per transaction (1-10000, default 200)', check: intCheck(1, 10_000) },
      },
      example: 'WEBHOOK_SECRET_KEY=<new> WEBHOOK_SECRET_KEY_PREVIOUS=<old> DATABASE_URL=postgres://... certfleet webhooks rekey',
      notes:
        'Local, like migrate (the database and keys of this configuration). Run with the new key in WEBHOOK_SECRET_KEY and the old one in ' +
        'WEBHOOK_SECRET_KEY_PREVIOUS, while the service runs with both (README: Rotating the webhook secret key). Safe to interrupt and run ' +
        'again; exit code 1 when a secret opens with neither key.',
      run: async (flags) => (await import('./webhooks-rekey.ts')).rekeyCommand(flags, (await import('../config.ts')).loadConfig()),
    },
  },
};
