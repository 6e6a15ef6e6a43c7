/**
 * bin/certfleet.js prints `certfleet --help` from the text the build saved (dist/cli/usage.txt,
 * scripts/build-server.mjs writes topUsage()) without loading the CLI; anything else, or no saved
 * text, runs the CLI. Run on a copy of the bin beside a stub CLI that tells when it is loaded.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { topUsage } from '../src/cli/main.ts';

const root = mkdtempSync(join(tmpdir(), 'certfleet-help-'));
mkdirSync(join(root, 'bin'));
mkdirSync(join(root, 'dist', 'cli'), { recursive: true });
copyFileSync(join(import.meta.dirname, '..', 'bin', 'certfleet.js'), join(root, 'bin', 'certfleet.js'));
writeFileSync(join(root, 'package.json'), '{"type":"module"}');
writeFileSync(join(root, 'dist', 'cli', 'main.js'), "export async function main(argv) { console.log('CLI LOADED ' + JSON.stringify(argv)); return 7; }\n");
afterAll(() => rmSync(root, { recursive: true, force: true }));

const run = (...args: string[]) => spawnSync(process.execPath, [join(root, 'bin', 'certfleet.js'), ...args], { encoding: 'utf8' });

describe('certfleet --help fast path', () => {
  it('prints the saved usage, which is what main() prints, without loading the CLI', () => {
    writeFileSync(join(root, 'dist', 'cli', 'usage.txt'), `${topUsage()}\n`);
    for (const flag of ['--help', '-h', 'help']) {
      const r = run(flag);
      expect(r.status).toBe(0);
      expect(r.stdout).toBe(`${topUsage()}\n`);
      expect(r.stdout).toContain('Usage: certfleet <command> [flags]');
    }
  });

  it('anything else runs the CLI with the arguments', () => {
    writeFileSync(join(root, 'dist', 'cli', 'usage.txt'), `${topUsage()}\n`);
    for (const args of [[], ['worker', '--help'], ['--help', 'worker']]) {
      const r = run(...args);
      expect(r.stdout).toBe(`CLI LOADED ${JSON.stringify(args)}\n`);
      expect(r.status).toBe(7);
    }
  });

  it('without the saved text (a build before it existed), --help runs the CLI', () => {
    rmSync(join(root, 'dist', 'cli', 'usage.txt'), { force: true });
    const r = run('--help');
    expect(r.stdout).toBe('CLI LOADED ["--help"]\n');
  });
});
