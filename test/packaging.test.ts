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
    expect(pkg.scripts.test).toMatch(/vitest run/);
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
