/**
 * The certfleet_acl broker plugin for tests: compiled from broker-plugin/certfleet_acl.c into
 * build/broker-plugin/ (git-ignored) at first use when scripts/test-setup.mjs has not done it.
 * Without a compiler or the Mosquitto headers this throws, naming the command to run: the tests
 * that need the plugin fail loudly, they are never skipped.
 *
 * Started as root, Mosquitto loads its plugins as the `mosquitto` user. A checkout in a folder
 * others may not enter (`mktemp -d`, /root: mode 0700) leaves build/ out of its reach ("cannot
 * open shared object file: Permission denied"), so there the tests give Mosquitto a copy in a
 * folder of their own that everyone may read, removed when the process exits.
 */
import { chmodSync, copyFileSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { buildBrokerPlugin } from '../../scripts/build-broker-plugin.mjs';

let built: string | null = null;

/** Whether a user other than the owner may read `file`: every folder above it searchable by others, the file readable by them. */
export function readableByOthers(file: string): boolean {
  if ((statSync(file).mode & 0o004) === 0) return false;
  for (let dir = dirname(resolve(file)); ; dir = dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) return false;
    if (dirname(dir) === dir) return true;
  }
}

export function aclPluginPath(): string {
  if (built) return built;
  const path = buildBrokerPlugin();
  if (process.getuid?.() !== 0 || readableByOthers(path)) return (built = path);
  const dir = mkdtempSync(join(tmpdir(), 'certfleet-acl-plugin-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const copy = join(dir, 'certfleet_acl.so');
  copyFileSync(path, copy);
  chmodSync(dir, 0o755); // mkdtemp makes it 0700
  chmodSync(copy, 0o755);
  return (built = copy);
}
