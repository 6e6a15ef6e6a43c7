/**
 * Broker fleet gauges on /metrics, read from the node list at scrape time (one query):
 * certfleet_broker_node_lag_seconds{node}, certfleet_broker_node_crl_number{node},
 * certfleet_broker_node_enforced{node} (1 passed, 0 failed, absent before a check),
 * certfleet_broker_node_last_report_timestamp_seconds{node}.
 */
import { Gauge, type Registry } from 'prom-client';
import type { BrokerFleet, BrokerNodeView } from '../app/broker-nodes.ts';

export function registerBrokerFleetMetrics(registry: Registry, fleet: Pick<BrokerFleet, 'list'>): void {
  let pending: Promise<BrokerNodeView[]> | null = null;
  // the four gauges of one scrape share one read
  const nodes = () =>
    (pending ??= fleet
      .list()
      .then((l) => l.nodes)
      .finally(() => setImmediate(() => (pending = null))));
  const gauge = (name: string, help: string, value: (n: BrokerNodeView) => number | null) =>
    new Gauge({
      name,
      help,
      labelNames: ['node'],
      registers: [registry],
      async collect() {
        const list = await nodes();
        this.reset();
        for (const n of list) {
          const v = value(n);
          if (v !== null) this.set({ node: n.node }, v);
        }
      },
    });
  gauge('certfleet_broker_node_lag_seconds', 'How far a broker node is behind the latest CRL (0: applied)', (n) => n.lag_seconds);
  gauge('certfleet_broker_node_crl_number', 'CRL Number a broker node applied', (n) => (n.crl_number === null ? null : Number(n.crl_number)));
  gauge('certfleet_broker_node_enforced', "1 when a broker node's last canary check passed, 0 when it failed", (n) =>
    n.last_check_result === null ? null : n.last_check_result === 'passed' ? 1 : 0,
  );
  gauge('certfleet_broker_node_last_report_timestamp_seconds', 'When a broker node last reported (Unix time)', (n) => Date.parse(n.reported_at) / 1000);
}
