import type { FastifyInstance } from 'fastify';

export type RouteAccess = 'customer' | 'operator' | 'session' | 'public' | 'broker-agent';

export interface RegisteredRoute {
  method: string;
  url: string;
  access: RouteAccess;
  /** The prefix of its scope ('' for public routes): url = prefix + path. */
  prefix: string;
  path: string;
}

const tables = new WeakMap<FastifyInstance, RegisteredRoute[]>();

/**
 * Records every route as it is registered (onRoute), with the access its scope gives it,
 * so tests can walk the real route table. Fastify's implicit HEAD twins of GET routes are left out.
 */
export function recordRoutes(app: FastifyInstance) {
  const table: RegisteredRoute[] = [];
  const scopes: { prefix: string; access: RouteAccess }[] = [];
  tables.set(app, table);
  app.addHook('onRoute', (route) => {
    const scope = scopes.find((s) => route.prefix === s.prefix || route.prefix.startsWith(`${s.prefix}/`));
    const prefix = scope?.prefix ?? '';
    for (const method of [route.method].flat()) {
      table.push({ method, url: route.url, access: scope?.access ?? 'public', prefix, path: route.url.slice(prefix.length) || '/' });
    }
  });
  return {
    scope(prefix: string, access: RouteAccess) {
      scopes.push({ prefix, access });
    },
  };
}

export function routeTable(app: FastifyInstance): RegisteredRoute[] {
  const table = tables.get(app) ?? [];
  const gets = new Set(table.filter((r) => r.method === 'GET').map((r) => r.url));
  return table.filter((r) => !(r.method === 'HEAD' && gets.has(r.url)));
}
