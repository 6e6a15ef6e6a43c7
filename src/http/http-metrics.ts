import type { FastifyInstance } from 'fastify';
import { Counter, Histogram, type Registry } from 'prom-client';

/**
 * Request metrics of the HTTP API: certfleet_http_requests_total{method,route,status} and
 * certfleet_http_request_duration_seconds{method,route}. `route` is the route's template
 * (`/api/v1/customer/devices/:deviceId`), never the raw URL, so a scanner cannot explode the
 * series count; requests that matched no route share `route="unmatched"`.
 */
export function installHttpMetrics(app: FastifyInstance, registry: Registry): void {
  const existing = registry.getSingleMetric('certfleet_http_requests_total');
  const requests =
    (existing as Counter<'method' | 'route' | 'status'> | undefined) ??
    new Counter({ name: 'certfleet_http_requests_total', help: 'HTTP requests answered, by method, route template and status code', labelNames: ['method', 'route', 'status'], registers: [registry] });
  const duration =
    (registry.getSingleMetric('certfleet_http_request_duration_seconds') as Histogram<'method' | 'route'> | undefined) ??
    new Histogram({
      name: 'certfleet_http_request_duration_seconds',
      help: 'HTTP request duration, request received to response sent, by method and route template',
      labelNames: ['method', 'route'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    const method = request.method;
    requests.inc({ method, route, status: String(reply.statusCode) });
    duration.observe({ method, route }, reply.elapsedTime / 1000);
  });
}
