#!/usr/bin/env node
/**
 * Compiles certfleet's Mosquitto ACL plugin (broker-plugin/certfleet_acl.c) into
 * build/broker-plugin/certfleet_acl.so (git-ignored), when it is missing or older than its source.
 *
 * - `node scripts/build-broker-plugin.mjs [--out FILE]`: builds (or says it is current), prints the path.
 * - `buildBrokerPlugin()`: the same from code (scripts/test-setup.mjs, test/support/acl-plugin.ts).
 *   Throws, naming the command to run, when the compiler or the Mosquitto headers are missing
 *   (Debian: mosquitto-dev, libmosquitto-dev and libssl-dev; Alpine: mosquitto-dev and openssl-dev).
 *
 * Plain JavaScript with no dependency: it runs before `npm install` has built anything.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const ACL_PLUGIN_SOURCE = join(ROOT, 'broker-plugin', 'certfleet_acl.c');
export const ACL_PLUGIN_BUILD = join(ROOT, 'build', 'broker-plugin', 'certfleet_acl.so');
/** The Debian packages the build needs, and the header each one provides. */
export const ACL_PLUGIN_PACKAGES = [
  { pkg: 'mosquitto-dev', file: '/usr/include/mosquitto_broker.h' },
  { pkg: 'libmosquitto-dev', file: '/usr/include/mosquitto.h' },
  // OpenSSL: the CA scope binding checks which CA signed a client certificate; MQTT provisioning
  // hashes a claim client's certificate.
  { pkg: 'libssl-dev', file: '/usr/include/openssl/x509.h' },
];
export const ACL_PLUGIN_INSTALL = `apt-get install -y --no-install-recommends gcc ${ACL_PLUGIN_PACKAGES.map((p) => p.pkg).join(' ')}`;

const compiler = () => ['cc', 'gcc'].find((c) => spawnSync('sh', ['-c', `command -v ${c}`], { stdio: 'ignore' }).status === 0);

/** Builds the plugin when needed; returns its path. Throws with the command to run when it cannot. `packages`: the headers to require (tests). */
export function buildBrokerPlugin({ out = ACL_PLUGIN_BUILD, log = () => {}, packages = ACL_PLUGIN_PACKAGES } = {}) {
  const target = resolve(out);
  if (existsSync(target) && statSync(target).mtimeMs >= statSync(ACL_PLUGIN_SOURCE).mtimeMs) return target;
  const cc = compiler();
  const missing = packages.filter((p) => !existsSync(p.file)).map((p) => p.pkg);
  if (!cc || missing.length > 0) {
    throw new Error(
      `cannot build the certfleet_acl broker plugin: missing ${[...(cc ? [] : ['a C compiler (gcc)']), ...missing].join(', ')}. ` +
        `Install them (as root): ${ACL_PLUGIN_INSTALL}; then: node scripts/build-broker-plugin.mjs`,
    );
  }
  mkdirSync(dirname(target), { recursive: true });
  const tmp = `${target}.${process.pid}.tmp`;
  const res = spawnSync(cc, ['-shared', '-fPIC', '-O2', '-Wall', '-Wextra', '-Werror', '-o', tmp, ACL_PLUGIN_SOURCE, '-lcrypto'], { encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`cannot build the certfleet_acl broker plugin (${cc} exited ${res.status}):\n${res.stderr}`);
  renameSync(tmp, target);
  log(`built ${target}`);
  return target;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const i = process.argv.indexOf('--out');
  try {
    console.log(buildBrokerPlugin({ out: i > 0 ? process.argv[i + 1] : undefined, log: console.error }));
  } catch (error) {
    console.error(error.message);
    process.exit(1);
  }
}
