import type { SecretSealer } from './ports.ts';
import type { AppDeps } from './deps.ts';

/** The approval secret's row id in its AEAD context (src/renewal/claim-onboarding.ts seals it so: one policy per tenant). */
const APPROVAL_SEAL_ID = 0;

export interface RekeyReport {
  /** Secrets re-sealed under the current key (and bound to their row). */
  rekeyed: number;
  /** Secrets replaced meanwhile (a secret rotation sealed them under the current key): nothing to do. */
  changedMeanwhile: number;
  /**
   * Secrets no configured key opens (left as they are; deliveries to them fail until their secret
   * is rotated). `kind` "approval": a provisioning policy's approval webhook secret (`id` 0; put the
   * policy again with `rotate_approval_secret: true`).
   */
  failed: { id: number; tenant_id: string; error: string; kind?: 'approval' }[];
  /** True when no secret outside the current key is left (failures aside): the previous key can go. */
  complete: boolean;
}

/**
 * Re-encrypts every stored webhook secret under the current WEBHOOK_SECRET_KEY, bound to its
 * tenant and webhook (associated data): v2 values of the previous key, v1 values (no associated
 * data) and legacy plaintext; then the provisioning policies' approval webhook secrets. Batches of `batchSize` rows in one short transaction each, in id
 * order; each row is replaced only if it did not change meanwhile (compare and swap), so the
 * service keeps running and delivering (it reads both keys meanwhile), and an interrupted run is
 * resumed by running it again (what is done is skipped). `maxRows` stops early (tests, throttling).
 */
export function createRekeyWebhookSecrets({ storage, secrets }: Pick<AppDeps, 'storage'> & { secrets: SecretSealer }) {
  return async (options: { batchSize?: number; maxRows?: number } = {}): Promise<RekeyReport> => {
    const batchSize = options.batchSize ?? 200;
    const maxRows = options.maxRows ?? Number.POSITIVE_INFINITY;
    const report: RekeyReport = { rekeyed: 0, changedMeanwhile: 0, failed: [], complete: false };
    let afterId = 0;
    let seen = 0;
    for (;;) {
      const limit = Math.min(batchSize, maxRows - seen);
      if (limit <= 0) return report;
      const batch = await storage.asOperator(async ({ webhooks }) => {
        const rows = await webhooks.listSecretsNotUnder(secrets.currentPrefix, afterId, limit);
        for (const row of rows) {
          const context = { tenantId: row.tenantId, webhookId: row.id };
          let plain: string;
          try {
            plain = secrets.open(row.secret, context);
          } catch (e) {
            report.failed.push({ id: row.id, tenant_id: row.tenantId, error: (e as Error).message });
            continue;
          }
          if (await webhooks.replaceStoredSecret(row.id, row.secret, secrets.seal(plain, context))) report.rekeyed++;
          else report.changedMeanwhile++;
        }
        return rows;
      });
      seen += batch.length;
      const last = batch.at(-1);
      if (batch.length < limit || last === undefined) break;
      afterId = last.id;
    }
    // The provisioning policies' approval webhook secrets (sealed with the same key, bound to the tenant and row id 0).
    let afterTenant = '';
    for (;;) {
      const limit = Math.min(batchSize, maxRows - seen);
      if (limit <= 0) return report;
      const batch = await storage.asOperator(async ({ webhooks }) => {
        const rows = await webhooks.listApprovalSecretsNotUnder(secrets.currentPrefix, afterTenant, limit);
        for (const row of rows) {
          const context = { tenantId: row.tenantId, webhookId: APPROVAL_SEAL_ID };
          let plain: string;
          try {
            plain = secrets.open(row.secret, context);
          } catch (e) {
            report.failed.push({ id: APPROVAL_SEAL_ID, tenant_id: row.tenantId, error: `approval webhook secret: ${(e as Error).message}`, kind: 'approval' });
            continue;
          }
          if (await webhooks.replaceApprovalSecret(row.tenantId, row.secret, secrets.seal(plain, context))) report.rekeyed++;
          else report.changedMeanwhile++;
        }
        return rows;
      });
      seen += batch.length;
      const last = batch.at(-1);
      if (batch.length < limit || last === undefined) {
        report.complete = true;
        return report;
      }
      afterTenant = last.tenantId;
    }
  };
}
