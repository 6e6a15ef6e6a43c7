/**
 * The certfleet_acl broker plugin's build (scripts/build-broker-plugin.mjs, shared by
 * scripts/test-setup.mjs and test/support/acl-plugin.ts): it compiles with -Werror against the
 * installed Mosquitto 2.0 headers into a git-ignored folder, exports the v5 plugin entry points,
 * and without the headers it fails naming the command to run (the tests that need the plugin then
 * fail loudly; none is skipped).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ACL_PLUGIN_BUILD, ACL_PLUGIN_INSTALL, buildBrokerPlugin } from '../scripts/build-broker-plugin.mjs';

const dir = mkdtempSync(join(tmpdir(), 'certfleet-plugin-build-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('certfleet_acl build', () => {
  it('compiles into the given file and exports the Mosquitto v5 plugin entry points', () => {
    const out = buildBrokerPlugin({ out: join(dir, 'certfleet_acl.so') });
    const symbols = execFileSync('nm', ['-D', '--defined-only', out], { encoding: 'utf8' });
    for (const name of ['mosquitto_plugin_version', 'mosquitto_plugin_init', 'mosquitto_plugin_cleanup']) expect(symbols).toMatch(new RegExp(`\\bT ${name}$`, 'm'));
  });

  it('fails, naming the packages and the command, when the Mosquitto headers are missing', () => {
    const missing = [{ pkg: 'mosquitto-dev', file: join(dir, 'no', 'mosquitto_broker.h') }];
    expect(() => buildBrokerPlugin({ out: join(dir, 'other.so'), packages: missing })).toThrow(
      new RegExp(`missing mosquitto-dev\\. Install them \\(as root\\): ${ACL_PLUGIN_INSTALL.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}; then: node scripts/build-broker-plugin\\.mjs`),
    );
  });

  it('builds into build/ by default, which git ignores', () => {
    expect(ACL_PLUGIN_BUILD).toMatch(/\/build\/broker-plugin\/certfleet_acl\.so$/);
    expect(readFileSync(join(import.meta.dirname, '..', '.gitignore'), 'utf8').split('\n')).toContain('build/');
  });
});
