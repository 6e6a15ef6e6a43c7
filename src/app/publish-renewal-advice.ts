import { DEFAULT_RENEWAL_POLICY, renewalSchedule, type RenewalPolicy } from '../domain/renewal-policy.ts';
import type { AppDeps } from './deps.ts';

/** Where advice goes: a retained message on the device's advice topic (null clears it). */
export interface RenewalAdvicePublisher {
  publish(commonName: string, payload: string | null): Promise<void>;
}

const BATCH = 500;
const LOCK_KEY = 7_240_421;

/**
 * The worker's `renewal-advice` task, system-wide:
 * 1. certificates whose window has begun get a schedule: when their (jittered, deterministic per
 *    certificate) window starts (`due_at`) and when half of it is gone (`overdue_at`, from which the
 *    expiry alert is raised: raise-expiry-alerts);
 * 2. due schedules are published as retained advice on `certfleet/renew/<CN>/advice` (when MQTT
 *    renewal is configured);
 * 3. schedules of certificates no longer ACTIVE or renewed are removed, and their retained advice
 *    cleared.
 * Each step handles at most BATCH rows per run; the next run takes the rest.
 */
export function createPublishRenewalAdvice({ storage, clock, publisher }: Pick<AppDeps, 'storage' | 'clock'> & { publisher: RenewalAdvicePublisher | null }) {
  return async () => {
    const now = clock.now();
    const scheduled = await storage.asOperator(async ({ tasks, renewalAdvice, renewalPolicy }) => {
      await tasks.lockTask(LOCK_KEY);
      const candidates = await renewalAdvice.certificatesEnteringWindow(now, DEFAULT_RENEWAL_POLICY.renewal_window, BATCH);
      const policies = new Map<string, RenewalPolicy>();
      for (const c of candidates) if (!policies.has(c.tenant_id)) policies.set(c.tenant_id, await renewalPolicy.getRenewalPolicy(c.tenant_id));
      const rows = candidates.map((c) => {
        const { dueAt, overdueAt } = renewalSchedule(c, policies.get(c.tenant_id)!);
        return { certificateId: c.id, tenantId: c.tenant_id, deviceId: c.device_id, dueAt, overdueAt };
      });
      await renewalAdvice.scheduleAdvice(rows);
      return rows.length;
    });
    const cleared = await storage.asOperator(({ renewalAdvice }) => renewalAdvice.removeStaleAdvice(BATCH));
    let published = 0;
    if (publisher) {
      for (const device of cleared) await publisher.publish(device.common_name, null);
      const due = await storage.asOperator(({ renewalAdvice }) => renewalAdvice.dueAdvice(now, BATCH));
      const done: number[] = [];
      try {
        for (const a of due) {
          await publisher.publish(
            a.common_name,
            JSON.stringify({
              certificate_id: a.certificate_id,
              serial_number: a.serial_number,
              not_after: a.not_after,
              renew_from: a.due_at,
              overdue_at: a.overdue_at,
              server_time: now.toISOString(),
            }),
          );
          done.push(a.certificate_id);
        }
      } finally {
        await storage.asOperator(({ renewalAdvice }) => renewalAdvice.markAdvicePublished(done, now));
      }
      published = done.length;
    }
    return { scheduled, published, cleared: cleared.length };
  };
}
