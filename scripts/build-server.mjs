// Compiles src/ to dist/ and copies every non-TypeScript file beside it (SQL migrations, ...), so
// the compiled code finds its assets at the same relative paths as the sources do.
// dist/ is emptied first: a file moved or deleted in src/ must not survive as stale JavaScript.
import { spawnSync } from 'node:child_process';
import { cpSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const src = `${root}src`;
const dist = `${root}dist`;

rmSync(dist, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const res = spawnSync(process.execPath, [tsc, '-p', `${root}tsconfig.build.json`], { stdio: 'inherit' });
if (res.status !== 0) process.exit(res.status ?? 1);
cpSync(src, dist, { recursive: true, filter: (path) => !path.endsWith('.ts') });

// `certfleet --help`'s text, printed by bin/certfleet.js without loading the CLI (the same text
// main() prints: test/cli-help-fast-path.test.ts).
const { topUsage } = await import(`${dist}/cli/main.js`);
writeFileSync(`${dist}/cli/usage.txt`, `${topUsage()}\n`);

// The embedded database's template (a migrated, empty PGlite data dir): a first start loads it
// instead of running initdb and the migrations (src/storage/pglite-template.ts).
const { writePgliteTemplate } = await import(`${dist}/storage/pglite-template.js`);
await writePgliteTemplate();
