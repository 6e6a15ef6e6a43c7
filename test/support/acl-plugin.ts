/**
 * The certfleet_acl broker plugin for tests: compiled from broker-plugin/certfleet_acl.c into
 * build/broker-plugin/ (git-ignored) at first use when scripts/test-setup.mjs has not done it.
 * Without a compiler or the Mosquitto headers this throws, naming the command to run: the tests
 * that need the plugin fail loudly, they are never skipped.
 */
import { buildBrokerPlugin } from '../../scripts/build-broker-plugin.mjs';

let built: string | null = null;

export function aclPluginPath(): string {
  built ??= buildBrokerPlugin();
  return built;
}
