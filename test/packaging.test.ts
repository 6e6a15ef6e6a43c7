/**
 * package.json: what `npm install` needs and what the service runs. The engines range is one every
 * package in the lockfile accepts (production and development: `npm install` builds through
 * `prepare`), so npm never warns EBADENGINE on a supported Node; CI runs the oldest one.
 * The compiled CLI itself is run by deploy.test.ts, from the image's file list.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import semver from 'semver';
import { describe, expect, it } from 'vitest';
import { outcome, workersFor } from '../scripts/run-tests.mjs';

const ROOT = join(import.meta.dirname, '..');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  bin: Record<string, string>;
  engines: { node: string };
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};
const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as {
  packages: Record<string, { engines?: { node?: string }; dev?: boolean }>;
};

describe('package.json', () => {
  it('declares a Node range that every locked package accepts, and this Node (CI) is the oldest supported major', () => {
    const ours = pkg.engines.node;
    const refusing = Object.entries(lock.packages)
      .filter(([name, p]) => name && p.engines?.node && !semver.subset(ours, p.engines.node))
      .map(([name, p]) => `${name} wants ${p.engines!.node}`);
    expect(refusing).toEqual([]);
    expect(semver.satisfies(process.version, ours)).toBe(true);
    expect(semver.major(process.version)).toBe(semver.minVersion(ours)!.major);
  });

  it('runs compiled JavaScript: the bin and `npm start` load dist/, never tsx; `prepare` builds it', () => {
    const bin = readFileSync(join(ROOT, pkg.bin.certfleet), 'utf8');
    expect(bin).toContain("'../dist/cli/main.bundle.js' : '../dist/cli/main.js'");
    expect(existsSync(join(ROOT, 'dist/cli/main.bundle.js')), 'the build makes the one-file CLI').toBe(true);
    expect(bin).not.toMatch(/tsx|\.ts['"]/);
    expect(pkg.scripts.start).toBe('node bin/certfleet.js serve');
    expect(pkg.scripts.prepare).toBe('npm run build');
    expect(pkg.scripts.build).toMatch(/^npm run build:server && npm run build:web --if-present$/);
    expect(pkg.scripts.test).toBe('node scripts/run-tests.mjs');
    const runner = readFileSync(join(ROOT, 'scripts/run-tests.mjs'), 'utf8');
    expect(runner).toContain("[bin, 'run', ...process.argv.slice(2)]");
    expect(runner).toContain("'scripts', 'static-checks.mjs'");
    expect(runner).toContain("'scripts', 'test-setup.mjs'");
  });

  it('npm test gives vitest one worker more than the two only when other work keeps less than half the cores busy now', () => {
    expect(workersFor(2, 0.2)).toBe(3);
    expect(workersFor(2, 1.2)).toBe(2);
    expect(workersFor(2, null)).toBe(2); // unknown: as on a busy machine
    expect(workersFor(1, 0)).toBe(1);
  });

  it('npm test fails when either the static checks or the suite fail, and says which; its last line counts a failed static check', () => {
    const counts = { passed: 10, failed: 0, skipped: 2 };
    expect(outcome(0, { code: 0 }, counts)).toEqual({ code: 0, lines: ['10 passed, 0 failed, 2 skipped'] });
    expect(outcome(0, { code: 1 }, counts)).toEqual({ code: 1, lines: ['npm test: the static checks failed (above)', '10 passed, 1 failed, 2 skipped'] });
    expect(outcome(1, { code: 0 }, { ...counts, failed: 3 })).toEqual({ code: 1, lines: ['npm test: the test suite failed (vitest, above)', '10 passed, 3 failed, 2 skipped'] });
    // vitest died before its reporter: no counts, still red
    expect(outcome(1, { code: 0 }, null)).toEqual({ code: 1, lines: ['npm test: the test suite failed (vitest, above)'] });
  });

  it('lists run-time packages as dependencies and the toolchain as devDependencies', () => {
    expect(Object.keys(pkg.dependencies)).toContain('mqtt');
    for (const tool of ['tsx', 'typescript', 'vitest', '@types/node']) {
      expect(pkg.dependencies[tool], tool).toBeUndefined();
      expect(pkg.devDependencies[tool], tool).toBeDefined();
    }
    // mqtt (broker session kicking) is loaded at run time: it must be in the production tree.
    expect(lock.packages['node_modules/mqtt'].dev).toBeUndefined();
  });
});
