import type { Config } from '../config.ts';
import { createRekeyWebhookSecrets } from '../app/rekey-webhook-secrets.ts';
import { openStorage } from '../composition/open-storage.ts';
import { loadWebhookSecrets } from '../composition/webhook-secrets.ts';
import { createStorage } from '../storage/repositories.ts';
import type { Flags } from './spec.ts';
import { print } from './output.ts';

export async function rekeyCommand(flags: Flags, config: Config): Promise<number> {
  const batchSize = flags.batch === undefined ? 200 : Number(flags.batch);
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) throw new Error('--batch must be a whole number from 1 to 10000');
  const { box } = await loadWebhookSecrets(config);
  const storage = await openStorage(config);
  try {
    const report = await createRekeyWebhookSecrets({ storage: createStorage(storage.db), secrets: box })({ batchSize });
    const failed = report.failed.map((f) => `  webhook ${f.id} (tenant ${f.tenant_id}): ${f.error}`);
    print(
      flags,
      [
        `re-encrypted ${report.rekeyed} webhook secret(s) under the current key${report.changedMeanwhile ? ` (${report.changedMeanwhile} rotated meanwhile)` : ''}`,
        ...(failed.length ? [`${failed.length} secret(s) open with neither key (rotate their secret):`, ...failed] : ['every stored secret is under the current key: WEBHOOK_SECRET_KEY_PREVIOUS can be removed']),
      ].join('\n'),
      { rekeyed: report.rekeyed, changed_meanwhile: report.changedMeanwhile, failed: report.failed, complete: report.complete && report.failed.length === 0 },
    );
    return report.failed.length ? 1 : 0;
  } finally {
    await storage.close();
  }
}
