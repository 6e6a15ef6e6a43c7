import Fastify from 'fastify';
import { webConsoleRoutes } from '/work/wt/console/src/http/routes/web-console.ts';
const app = Fastify({ routerOptions: { ignoreTrailingSlash: true } });
app.register(webConsoleRoutes());
await app.ready();
console.log(app.printRoutes());
for (const u of ['/app/', '/app', '/app/index.html']) { const r = await app.inject(u); console.log(u, r.statusCode, r.body.slice(0, 80)); }
