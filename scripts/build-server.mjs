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

// The CLI as one file (dist/cli/main.bundle.js), which bin/certfleet.js runs when it is there: a
// start no longer resolves and reads about 1,100 modules one by one (Node's loader was most of a
// restart's first second). Built from the compiled dist/, so it runs exactly that code. Every
// bundled module keeps its own location: `import.meta.url`, `__dirname` and `__filename` are
// rewritten to the module's original file, so the assets found beside it (migrations, the PGlite
// template, the key-generation worker, the web console) resolve as before. Left out (loaded from
// node_modules as usual): PGlite (its WebAssembly and data files sit beside it, and it is imported
// only when used), pkcs11js (a native addon) and @fastify/swagger-ui (its static files); and
// dist/storage/pglite-wasm.js, shared with bin/certfleet.js.
const { build } = await import('esbuild');
const { readFile } = await import('node:fs/promises');
const { relative } = await import('node:path');
const bundleDir = `${dist}/cli`;
await build({
  entryPoints: [`${dist}/cli/main.js`],
  outfile: `${bundleDir}/main.bundle.js`,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['@electric-sql/pglite', 'pkcs11js', '@fastify/swagger-ui'],
  logLevel: 'warning',
  legalComments: 'none',
  banner: {
    js: "import { createRequire as __certfleetCreateRequire } from 'node:module'; const require = __certfleetCreateRequire(import.meta.url); const __certfleetBundleUrl = import.meta.url;",
  },
  plugins: [
    {
      // One compile of PGlite's WebAssembly shared with bin/certfleet.js, which starts it before
      // loading this bundle (src/storage/pglite-wasm.ts): both must import the same file.
      name: 'shared-pglite-wasm',
      setup(b) {
        b.onResolve({ filter: /\/pglite-wasm\.js$/ }, () => ({ path: '../storage/pglite-wasm.js', external: true }));
      },
    },
    {
      name: 'keep-module-locations',
      setup(b) {
        b.onLoad({ filter: /\.(m?js|cjs)$/ }, async (args) => {
          const text = await readFile(args.path, 'utf8');
          // __certfleetBundleUrl, not import.meta.url: a CommonJS file that mentioned import.meta would be taken for ESM.
          const here = `new URL(${JSON.stringify(relative(bundleDir, args.path))}, __certfleetBundleUrl)`;
          let out = text.replaceAll('import.meta.url', `${here}.href`).replaceAll('import.meta.dirname', `require('node:path').dirname(require('node:url').fileURLToPath(${here}))`);
          if (!args.path.endsWith('.mjs') && /\b__(?:dirname|filename)\b/.test(out)) {
            // After a shebang and a 'use strict' directive, which must stay first to keep their meaning.
            const head = /^(#![^\n]*\n)?(\s*(?:\/\/[^\n]*\n|\/\*[\s\S]*?\*\/\s*)*\s*(['"])use strict\3;?)?/.exec(out)?.[0] ?? '';
            out = `${head}\nvar __filename = require('node:url').fileURLToPath(${here}); var __dirname = require('node:path').dirname(__filename);\n${out.slice(head.length)}`;
          }
          return out === text ? undefined : { contents: out, loader: 'js' };
        });
      },
    },
  ],
});
