import { loadConfig } from '../config.ts';
import type { GroupSpec } from './spec.ts';

/** `certfleet webhooks rekey`: local (the database and the keys of this configuration), like `migrate`. */
export const webhooksGroup: GroupSpec = {
  summary: 'maintain the stored webhook secrets',
  subcommands: {
    rekey: {
      summary: 're-encrypt every stored webhook secret under WEBHOOK_SECRET_KEY, bound to its tenant and webhook',
      flags: {
        json: { type: 'boolean', help: 'print JSON' },
        batch: { type: 'string', value: 'N', help: 'rows per transaction (default 200)' },
      },
      example: 'WEBHOOK_SECRET_KEY=<new> WEBHOOK_SECRET_KEY_PREVIOUS=<old> DATABASE_URL=postgres://... certfleet webhooks rekey',
      notes:
        'Run with the new key in WEBHOOK_SECRET_KEY and the old one in WEBHOOK_SECRET_KEY_PREVIOUS, while the service runs with both ' +
        '(README: Rotating the webhook secret key). Safe to interrupt and run again; exit code 1 when a secret opens with neither key.',
      run: async (flags) => (await import('./webhooks-rekey.ts')).rekeyCommand(flags, loadConfig()),
    },
  },
};
