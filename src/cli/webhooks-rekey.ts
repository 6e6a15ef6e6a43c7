import type { Config } from '../config.ts';
import { createRekeyWebhookSecrets } from '../app/rekey-webhook-secrets.ts';
import { openStorage } from '../composition/open-storage.ts';
import { loadWebhookSecrets } from '../composition/webhook-secrets.ts';
import { createStorage } from '../storage/repositories.ts';
import type { Flags } from './spec.ts';
import { positiveInt } from './client-flags.ts';
import { plural, print } from './output.ts';

export async function rekeyCommand(flags: Flags, config: Config): Promise<number> {
  const batchSize = positiveInt(flags.batch, 'batch', 200, 10_000); // checked by the flag spec too: a usage error (exit 2)
  const { box } = await loadWebhookSecrets(config);
  const storage = await openStorage(config);
  try {
    const report = await createRekeyWebhookSecrets({ storage: createStorage(storage.db), secrets: box })({ batchSize });
    const failed = report.failed.map((f) => `  webhook ${f.id} (tenant ${f.tenant_id}): ${f.error}`);
    print(
      flags,
      [
        `re-encrypted ${plural(report.rekeyed, 'webhook secret')} under the current key${report.changedMeanwhile ? ` (${report.changedMeanwhile} rotated meanwhile)` : ''}`,
        ...(failed.length ? [`${plural(failed.length, 'secret')} ${failed.length === 1 ? 'opens' : 'open'} with neither key (rotate ${failed.length === 1 ? 'it' : 'them'}):`, ...failed] : ['every stored secret is under the current key: WEBHOOK_SECRET_KEY_PREVIOUS can be removed']),
      ].join('\n'),
      { rekeyed: report.rekeyed, changed_meanwhile: report.changedMeanwhile, failed: report.failed, complete: report.complete && report.failed.length === 0 },
    );
    return report.failed.length ? 1 : 0;
  } finally {
    await storage.close();
  }
}
