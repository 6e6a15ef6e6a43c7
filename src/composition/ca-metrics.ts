/**
 * certfleet_ca_not_after_timestamp_seconds{ca} on /metrics: the notAfter of each CA this process
 * signs with (ca: its subject key identifier, hex), so Prometheus can page before a CA expires
 * (deploy/prometheus, CertfleetCaExpiring*) next to the CA_EXPIRING system alert.
 */
import { Gauge, type Registry } from 'prom-client';

export function registerCaMetrics(registry: Registry, cas: () => ReadonlyArray<{ id: string; notAfter: Date }>): void {
  new Gauge({
    name: 'certfleet_ca_not_after_timestamp_seconds',
    help: 'notAfter of a CA this process signs with (Unix time)',
    labelNames: ['ca'],
    registers: [registry],
    collect() {
      this.reset();
      for (const ca of cas()) this.set({ ca: ca.id }, ca.notAfter.getTime() / 1000);
    },
  });
}
