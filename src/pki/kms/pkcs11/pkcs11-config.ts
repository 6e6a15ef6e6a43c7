import { resolve } from 'node:path';
import { DEFAULT_PKCS11_MODULE_PATH } from './pkcs11-module.ts';
import { Pkcs11UriError, parsePkcs11Uri } from './pkcs11-uri.ts';

/** DEVICE_CA_KEY_URI, PKCS11_MODULE_PATH, PKCS11_PIN_FILE, PKCS11_SESSIONS; null without a URI. */
export function pkcs11Config(env: NodeJS.ProcessEnv, sessions: number): { keyUri: string; modulePath: string; pinFile: string; sessions: number } | null {
  if (env.PKCS11_PIN !== undefined) throw new Error('PKCS11_PIN is not read (the PIN never comes from the environment): put it in a file only certfleet can read and set PKCS11_PIN_FILE');
  const keyUri = env.DEVICE_CA_KEY_URI || null;
  if (!keyUri) return null;
  if (env.DEVICE_CA_KEY_PATH) throw new Error('set DEVICE_CA_KEY_URI (a key in a PKCS#11 token) or DEVICE_CA_KEY_PATH (a key file), not both');
  try {
    parsePkcs11Uri(keyUri);
  } catch (e) {
    if (e instanceof Pkcs11UriError) throw new Error(`DEVICE_CA_KEY_URI: ${e.message}`);
    throw e;
  }
  if (!env.PKCS11_PIN_FILE) throw new Error('DEVICE_CA_KEY_URI is set but PKCS11_PIN_FILE is not (the file holding the token user PIN)');
  return { keyUri, modulePath: resolve(env.PKCS11_MODULE_PATH || DEFAULT_PKCS11_MODULE_PATH), pinFile: resolve(env.PKCS11_PIN_FILE), sessions };
}
