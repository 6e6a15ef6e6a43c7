import { Gauge, type Registry } from 'prom-client';
import { CERTIFICATE_STATUSES } from '../domain/certificate.ts';
import type { Clock } from '../domain/clock.ts';
import { SEVERITY } from '../domain/expiry-policy.ts';
import type { Database } from '../storage/database.ts';
import { readFleetStats, type FleetStats } from '../storage/repos/fleet-stats-repo.ts';

const WINDOWS_DAYS = [1, 7, 30, 90];
/** A snapshot is reused for this many times the time it took to read (at least none): cheap on a small fleet, bounded load on a huge one. */
const CACHE_FACTOR = 20;

/**
 * Fleet gauges computed at scrape time from the database (so every API replica reports the
 * same numbers): certfleet_certificates{status}, certfleet_certificates_expiring{within_days},
 * certfleet_certificate_soonest_expiry_timestamp_seconds ({tenant} with METRICS_TENANT_LABELS) and
 * certfleet_alerts_open{severity}, certfleet_crl_this_update_timestamp_seconds,
 * certfleet_worker_task_last_run_timestamp_seconds{task},
 * certfleet_worker_task_consecutive_failures{task} and certfleet_webhook_deliveries_pending.
 * One read serves all of them.
 */
export function registerFleetMetrics(registry: Registry, deps: { db: Database; clock: Clock; tenantLabels: boolean }) {
  let cached: { stats: FleetStats; readAt: number; tookMs: number } | null = null;
  let inFlight: Promise<FleetStats> | null = null;
  const snapshot = async (): Promise<FleetStats> => {
    if (cached && performance.now() - cached.readAt <= cached.tookMs * CACHE_FACTOR) return cached.stats;
    inFlight ??= (async () => {
      const t0 = performance.now();
      try {
        const stats = await deps.db.asOperator((tx) => readFleetStats(tx, deps.clock.now(), WINDOWS_DAYS));
        cached = { stats, readAt: performance.now(), tookMs: performance.now() - t0 };
        return stats;
      } finally {
        inFlight = null;
      }
    })();
    return inFlight;
  };

  new Gauge({
    name: 'certfleet_certificates',
    help: 'Device certificates by status',
    labelNames: ['status'],
    registers: [registry],
    async collect() {
      const stats = await snapshot();
      for (const status of CERTIFICATE_STATUSES) this.set({ status }, stats.certificatesByStatus[status] ?? 0);
    },
  });
  new Gauge({
    name: 'certfleet_certificates_expiring',
    help: 'ACTIVE certificates whose not_after is within the given number of days (cumulative)',
    labelNames: ['within_days'],
    registers: [registry],
    async collect() {
      const stats = await snapshot();
      for (const d of WINDOWS_DAYS) this.set({ within_days: String(d) }, stats.expiringWithinDays[d] ?? 0);
    },
  });
  // Tenant ids are labels only with METRICS_TENANT_LABELS=true; otherwise one fleet-wide series.
  const horizon = `within ${Math.max(...WINDOWS_DAYS)} days`;
  if (deps.tenantLabels) {
    new Gauge({
      name: 'certfleet_certificate_soonest_expiry_timestamp_seconds',
      help: `Soonest not_after of a tenant's ACTIVE certificates (tenants with one ${horizon})`,
      labelNames: ['tenant'],
      registers: [registry],
      async collect() {
        const stats = await snapshot();
        this.reset();
        for (const [tenant, at] of Object.entries(stats.soonestExpiryByTenant)) this.set({ tenant }, at.getTime() / 1000);
      },
    });
  } else {
    new Gauge({
      name: 'certfleet_certificate_soonest_expiry_timestamp_seconds',
      help: `Soonest not_after of the fleet's ACTIVE certificates (when one is ${horizon})`,
      registers: [registry],
      async collect() {
        const stats = await snapshot();
        this.reset();
        const times = Object.values(stats.soonestExpiryByTenant).map((at) => at.getTime() / 1000);
        if (times.length > 0) this.set(Math.min(...times));
      },
    });
  }
  new Gauge({
    name: 'certfleet_alerts_open',
    help: 'Alerts not closed (OPEN or ACKNOWLEDGED), by severity',
    labelNames: ['severity'],
    registers: [registry],
    async collect() {
      const stats = await snapshot();
      this.reset();
      const severities = new Set([...Object.values(SEVERITY), ...Object.keys(stats.openAlertsBySeverity).map(Number)]);
      for (const severity of severities) this.set({ severity: String(severity) }, stats.openAlertsBySeverity[severity] ?? 0);
    },
  });
  new Gauge({
    name: 'certfleet_crl_this_update_timestamp_seconds',
    help: 'thisUpdate of the newest stored CRL (Unix time): its age says whether CRLs are still being published',
    registers: [registry],
    async collect() {
      const stats = await snapshot();
      this.reset();
      if (stats.crlThisUpdate) this.set(stats.crlThisUpdate.getTime() / 1000);
    },
  });
  new Gauge({
    name: 'certfleet_worker_task_last_run_timestamp_seconds',
    help: 'When the last run of each worker task finished, on any replica (Unix time, from the lease table)',
    labelNames: ['task'],
    registers: [registry],
    async collect() {
      const stats = await snapshot();
      this.reset();
      for (const [task, s] of Object.entries(stats.workerTasks)) if (s.lastFinishedAt) this.set({ task }, s.lastFinishedAt.getTime() / 1000);
    },
  });
  new Gauge({
    name: 'certfleet_worker_task_consecutive_failures',
    help: 'Runs of each worker task that failed in a row, on any replica (from the lease table)',
    labelNames: ['task'],
    registers: [registry],
    async collect() {
      const stats = await snapshot();
      this.reset();
      for (const [task, s] of Object.entries(stats.workerTasks)) this.set({ task }, s.consecutiveFailures);
    },
  });
  new Gauge({
    name: 'certfleet_webhook_deliveries_pending',
    help: 'Webhook deliveries waiting to be sent or retried',
    registers: [registry],
    async collect() {
      this.set((await snapshot()).webhookDeliveriesPending);
    },
  });
}
