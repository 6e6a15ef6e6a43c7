import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createPublicKey } from 'node:crypto';
import type { Config } from '../config.ts';
import type { Clock } from '../domain/clock.ts';
import { createDeviceCa, deviceCaFromSigner, loadDeviceCa, writeDeviceCa, type DeviceCa } from '../pki/device-ca.ts';
import { openPkcs11Signer } from '../pki/kms/pkcs11/pkcs11-signer.ts';
import { readPinFile } from '../pki/kms/pkcs11/pin-file.ts';

export type LoadedCa = { ca: DeviceCa | null; created: boolean; problem: string | null };

/**
 * Loads the Device CA once. In embedded (development) mode a missing CA is created in
 * the data dir; in production mode a missing CA leaves issuing at 503. A CA key in a PKCS#11
 * token (DEVICE_CA_KEY_URI) needs its certificate at DEVICE_CA_CERT_PATH and is refused, with
 * the reason, unless the token signs with it and the signature verifies with that certificate.
 */
export async function loadCaForConfig(config: Config, clock: Clock): Promise<LoadedCa> {
  if (config.pkcs11) return { ca: await loadTokenCa(config, config.pkcs11), created: false, problem: null };
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

async function loadTokenCa(config: Config, pkcs11: NonNullable<Config['pkcs11']>): Promise<DeviceCa> {
  if (!existsSync(config.caCertPath)) {
    throw new Error(`DEVICE_CA_KEY_URI is set but the CA certificate DEVICE_CA_CERT_PATH=${config.caCertPath} does not exist`);
  }
  const certPem = await readFile(config.caCertPath, 'utf8');
  const pin = await readPinFile(pkcs11.pinFile);
  const signer = await openPkcs11Signer({
    uri: pkcs11.keyUri,
    modulePath: pkcs11.modulePath,
    pin,
    maxSessions: pkcs11.sessions,
    certificatePublicKey: createPublicKey(certPem),
  });
  try {
    return await deviceCaFromSigner(certPem, signer);
  } catch (e) {
    await signer.close();
    throw e;
  }
}
