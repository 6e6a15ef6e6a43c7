/**
 * certfleet_ca_not_after_timestamp_seconds{ca} on /metrics: the notAfter of each CA this process
 * signs with (ca: its subject key identifier, hex), so Prometheus can page before a CA expires
 * (deploy/prometheus, CertfleetCaExpiring*) next to the CA_EXPIRING system alert.
 */
import { Gauge, type Registry } from 'prom-client';
import type { CrlPublication } from './crl.ts';

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

/**
 * Per-CA CRL status (several CAs: the unlabelled certfleet_crl_* gauges are the default CA's):
 * certfleet_ca_crl_number{ca,status} and certfleet_ca_crl_next_update_timestamp_seconds{ca,status}
 * of every trusted CA this process publishes (ca: the CA's id; status: staged|active|retiring).
 */
export function registerCaCrlMetrics(registry: Registry, crl: Pick<CrlPublication, 'cas' | 'publisherFor'>): void {
  const each = (set: (labels: { ca: string; status: string }, status: NonNullable<ReturnType<NonNullable<ReturnType<CrlPublication['publisherFor']>>['status']>>) => void) => {
    for (const ca of crl.cas()) {
      const publisher = crl.publisherFor(ca.issuerKeyId);
      if (publisher) set({ ca: ca.id, status: ca.status }, publisher.status());
    }
  };
  new Gauge({
    name: 'certfleet_ca_crl_number',
    help: 'CRL Number of the latest CRL of each published CA',
    labelNames: ['ca', 'status'],
    registers: [registry],
    collect() {
      this.reset();
      each((labels, s) => s.crlNumber !== null && this.set(labels, Number(s.crlNumber)));
    },
  });
  new Gauge({
    name: 'certfleet_ca_crl_next_update_timestamp_seconds',
    help: 'nextUpdate of the latest CRL of each published CA (Unix time); Mosquitto refuses every client of that CA after it',
    labelNames: ['ca', 'status'],
    registers: [registry],
    collect() {
      this.reset();
      each((labels, s) => s.nextUpdate !== null && this.set(labels, Math.floor(s.nextUpdate.getTime() / 1000)));
    },
  });
}
