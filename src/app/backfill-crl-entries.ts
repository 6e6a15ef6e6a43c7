import type { AppDeps } from './deps.ts';

/** Rows per batch: each batch is its own short transaction (its row locks are held only that long). */
export const CRL_ENTRY_BACKFILL_BATCH = 5_000;

/**
 * The worker's crl-entry-backfill task: gives every revoked certificate that has no stored CRL
 * entry (revoked before migration 035) the entry the revoking statement stores since, in batches by
 * id, each its own transaction, until none is left. A full CRL build then copies those entries
 * instead of encoding the rows (crl-repo.ts): the CRL's bytes are the same either way (the SQL
 * encoder's output equals the application's: test/crl-entry-der.test.ts). Resumable: a run that
 * stops half-way (a crash, a stop) leaves the rows it filled filled, and the next run finds only
 * the others; idempotent: nothing is selected twice once filled. Rows the SQL encoder declines are
 * passed over (they stay encoded at read time). Replicas running it at once skip each other's
 * locked rows.
 */
export function createBackfillCrlEntries({ storage }: Pick<AppDeps, 'storage'>, options: { batch?: number } = {}) {
  const batch = options.batch ?? CRL_ENTRY_BACKFILL_BATCH;
  return async () => {
    let afterId = 0;
    let scanned = 0;
    let filled = 0;
    let batches = 0;
    for (;;) {
      const result = await storage.asOperator(({ crl }) => crl.backfillCrlEntries(afterId, batch));
      if (result.lastId === null) break;
      batches++;
      scanned += result.scanned;
      filled += result.filled;
      afterId = result.lastId;
    }
    return { batches, scanned, filled };
  };
}
