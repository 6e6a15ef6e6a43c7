import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The environment variables certfleet reads, found in its source (src/**.ts): `env.NAME`,
 * `env['NAME']` and the config helpers' `int(env, 'NAME', ...)` / `bool(...)` / `ttl(...)`.
 * Derived, not listed, so a manifest setting a variable nobody reads (a typo, a renamed one)
 * is caught.
 */
export function environmentVariablesRead(srcDir: string): Set<string> {
  const names = new Set<string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts')) {
        const text = readFileSync(path, 'utf8');
        for (const m of text.matchAll(/\benv\.([A-Z][A-Z0-9_]*)\b|\benv\[['"]([A-Z][A-Z0-9_]*)['"]\]|\b(?:int|bool|ttl|str|key)\(env, '([A-Z][A-Z0-9_]*)'/g)) {
          names.add(m[1] ?? m[2] ?? m[3]);
        }
      }
    }
  };
  walk(srcDir);
  return names;
}
