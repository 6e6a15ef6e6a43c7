/**
 * Which topic-access mode the broker benches give `certfleet broker-config` (BENCH_BROKER_ACL).
 *
 * - `plugin` (default): certfleet_acl.so, built from broker-plugin/ into build/broker-plugin/ as the
 *   tests build it, passed as `--acl-plugin`. The deployed configuration (the compose stack builds
 *   the plugin into its broker image and passes --acl-plugin; the README makes plugin mode the
 *   default): no per-device state in the broker.
 * - `file`: `--no-acl-plugin`, an acl_file with one block per registered device. What the benches
 *   measured before 2026-12-07 on this host, only because the plugin is not installed where
 *   broker-config looks for it (ACL_PLUGIN_CANDIDATES). Mosquitto 2.0.11 parses that file in time
 *   quadratic in the devices at every SIGHUP, the CRL's included: with the benches' 10,000 devices
 *   it was about two thirds of the broker's CPU per reload at 100,000 CRL entries.
 */
import { aclPluginPath } from '../../test/support/acl-plugin.ts';

export type BenchAclMode = 'plugin' | 'file';

export function benchAclMode(): BenchAclMode {
  const raw = process.env.BENCH_BROKER_ACL ?? 'plugin';
  if (raw !== 'plugin' && raw !== 'file') throw new Error(`BENCH_BROKER_ACL must be plugin or file (got ${JSON.stringify(raw)})`);
  return raw;
}

/** The broker-config arguments for the mode. */
export function benchAclArgs(mode: BenchAclMode = benchAclMode()): string[] {
  return mode === 'plugin' ? ['--acl-plugin', aclPluginPath()] : ['--no-acl-plugin'];
}

/** For the tables' descriptions and the console. */
export function benchAclLabel(mode: BenchAclMode = benchAclMode()): string {
  return mode === 'plugin'
    ? 'topic access by the certfleet_acl plugin (`--acl-plugin`, the deployed default)'
    : 'topic access by an acl_file with one block per registered device (`--no-acl-plugin`, BENCH_BROKER_ACL=file)';
}
