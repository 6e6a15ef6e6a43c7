import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import { sendProblem } from '../../support/problem.ts';

/** Where `npm run build:web` writes the console (the same from src/http/routes and a compiled dist/http/routes). */
export const WEB_CONSOLE_DIR = fileURLToPath(new URL('../../../dist-web/', import.meta.url));

export interface WebConsoleOptions {
  dir?: string;
  /** Origins the page may call besides itself (the OIDC issuer, for discovery and the token exchange). */
  connectOrigins?: string[];
}

/**
 * The web console at /app (and / redirects there): static files built by Vite, served with a
 * strict Content-Security-Policy; everything it loads comes from this server.
 */
export function webConsoleRoutes(options: WebConsoleOptions = {}) {
  const dir = options.dir ?? WEB_CONSOLE_DIR;
  const csp = [
    "default-src 'self'",
    `connect-src 'self' ${(options.connectOrigins ?? []).join(' ')}`.trim(),
    "img-src 'self' data: blob:",
    "style-src 'self'",
    "script-src 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'self'",
  ].join('; ');
  return async (app: FastifyInstance) => {
    app.get('/', { schema: { hide: true } }, async (_request, reply) => reply.redirect('/app/', 302));
    if (!existsSync(`${dir}/index.html`)) {
      const notBuilt = async (_request: unknown, reply: Parameters<typeof sendProblem>[0]) =>
        sendProblem(reply, 'CONSOLE_NOT_BUILT', 'the web console is not built: run `npm run build:web`');
      app.get('/app', { schema: { hide: true } }, notBuilt);
      app.get('/app/*', { schema: { hide: true } }, notBuilt);
      return;
    }
    await app.register(async (scope) => {
      scope.addHook('onSend', async (_request, reply) => {
        reply.header('content-security-policy', csp);
        reply.header('x-content-type-options', 'nosniff');
        reply.header('referrer-policy', 'no-referrer');
      });
      // The router ignores trailing slashes, so /app and /app/ are one route that the static wildcard (/app/*) does not match.
      const page = readFileSync(`${dir}/index.html`);
      scope.get('/app', { schema: { hide: true } }, async (_request, reply) => reply.type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(page));
      await scope.register(fastifyStatic, {
        root: dir,
        prefix: '/app/',
        decorateReply: false,
        cacheControl: false,
        schemaHide: true,
        index: ['index.html'],
        // Hashed assets never change; the page itself is revalidated.
        // (typed as returning the thenable FastifyReply: nothing is awaited here)
        setHeaders: (res, path) => {
          void res.setHeader('cache-control', path.includes('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache');
        },
      });
    });
  };
}
