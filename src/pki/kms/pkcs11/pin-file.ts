import { readFile } from 'node:fs/promises';
import { assertKeyFileProtected } from '../../key-file-permissions.ts';

/**
 * The token's user PIN from PKCS11_PIN_FILE: protected like a key file (no group/other bits,
 * a folder only its owner can write), one line. Never read from the environment, never logged.
 */
export async function readPinFile(path: string): Promise<string> {
  try {
    await assertKeyFileProtected(path, 'the PKCS#11 PIN file (PKCS11_PIN_FILE)');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`the PKCS#11 PIN file PKCS11_PIN_FILE=${path} does not exist`);
    throw e;
  }
  const pin = (await readFile(path, 'utf8')).replace(/\r?\n$/, '');
  if (pin === '' || /[\r\n]/.test(pin)) throw new Error(`the PKCS#11 PIN file ${path} must hold the PIN on one line`);
  return pin;
}
