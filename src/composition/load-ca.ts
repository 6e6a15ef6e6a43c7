import { existsSync } from 'node:fs';
import type { Config } from '../config.ts';
import type { Clock } from '../domain/clock.ts';
import { createDeviceCa, loadDeviceCa, writeDeviceCa, type DeviceCa } from '../pki/device-ca.ts';

export type LoadedCa = { ca: DeviceCa | null; created: boolean; problem: string | null };

/**
 * Loads the Device CA once. In embedded (development) mode a missing CA is created in
 * the data dir; in production mode a missing CA leaves issuing at 503.
 */
export async function loadCaForConfig(config: Config, clock: Clock): Promise<LoadedCa> {
  const present = existsSync(config.caCertPath) && existsSync(config.caKeyPath);
  if (!present && config.productionMode) {
    return { ca: null, created: false, problem: `no Device CA at ${config.caCertPath} / ${config.caKeyPath}: issuing answers 503 (create one with: npx certfleet init-ca)` };
  }
  let created = false;
  if (!present) {
    await writeDeviceCa(await createDeviceCa({ now: clock.now(), commonName: 'certfleet Development Device CA' }), config.caCertPath, config.caKeyPath);
    created = true;
  }
  return { ca: await loadDeviceCa(config.caCertPath, config.caKeyPath, { file: config.caKeyPassphraseFile, value: config.caKeyPassphrase }), created, problem: null };
}
