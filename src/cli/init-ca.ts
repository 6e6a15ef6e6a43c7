import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Config } from '../config.ts';
import { systemClock } from '../domain/clock.ts';
import { createDeviceCa, writeDeviceCa, type CaKeyType } from '../pki/device-ca.ts';
import type { Flags } from './spec.ts';
import { print } from './output.ts';

export async function initCaCommand(flags: Flags, config: Config): Promise<number> {
  const keyType = (flags['key-type'] as string | undefined) ?? 'ec-p256';
  const certPath = flags.out ? resolve(String(flags.out), 'device-ca.crt') : config.caCertPath;
  const keyPath = flags.out ? resolve(String(flags.out), 'device-ca.key') : config.caKeyPath;
  if (existsSync(certPath) || existsSync(keyPath)) throw new Error(`a Device CA already exists at ${certPath} / ${keyPath}; not overwriting it`);
  const ca = await createDeviceCa({ keyType: keyType as CaKeyType, commonName: (flags.cn as string | undefined) ?? 'certfleet Device CA', now: systemClock.now() });
  await writeDeviceCa(ca, certPath, keyPath);
  print(
    flags,
    `Device CA (${keyType}) created:\n  certificate ${certPath}\n  private key ${keyPath} (mode 0600)\n` +
      `Point DEVICE_CA_CERT_PATH and DEVICE_CA_KEY_PATH at them.`,
    { cert_path: certPath, key_path: keyPath, key_type: keyType },
  );
  return 0;
}
