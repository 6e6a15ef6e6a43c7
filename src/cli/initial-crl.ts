import type { Config } from '../config.ts';
import type { DeviceCa } from '../pki/device-ca.ts';

/** Publishes the first CRL (placeholder until the CRL publisher lands). */
export async function publishInitialCrl(config: Config, _ca: DeviceCa): Promise<string> {
  throw new Error(`no CRL at ${config.crlOutputPath} yet: start certfleet once to publish it`);
}
