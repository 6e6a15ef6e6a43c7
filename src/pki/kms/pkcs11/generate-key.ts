/**
 * Generates a CA key pair inside a token (`ca create --key-uri`): the private key is created
 * sensitive and not extractable, so it can never leave the token; returns its URI and public key.
 */
import { randomBytes, type KeyObject } from 'node:crypto';
import { spkiOf } from '../../keys.ts';
import { acquireModule, findTokenSlot, login, type Handle } from './pkcs11-module.ts';
import { formatPkcs11Uri, parsePkcs11Uri } from './pkcs11-uri.ts';
import { describeKeyRef, findObjects, findTokenKey } from './token-key.ts';

export type TokenKeyType = 'ec-p256' | 'ec-p384' | 'rsa-3072';

export interface GenerateTokenKeyOptions {
  /** Names the token and the new key's label (object=) and/or CKA_ID (id=; random 16 bytes when absent). */
  uri: string;
  modulePath: string;
  pin: string;
  keyType?: TokenKeyType;
}

export interface GeneratedTokenKey {
  /** The URI to configure as DEVICE_CA_KEY_URI: token, object label and CKA_ID. */
  uri: string;
  publicKey: KeyObject;
  spkiDer: Buffer;
}

const EC_PARAMS: Record<string, Buffer> = {
  'ec-p256': Buffer.from('06082a8648ce3d030107', 'hex'),
  'ec-p384': Buffer.from('06052b81040022', 'hex'),
};

export async function generateKeyInToken(options: GenerateTokenKeyOptions): Promise<GeneratedTokenKey> {
  const keyType = options.keyType ?? 'ec-p256';
  const ref = parsePkcs11Uri(options.uri);
  if (ref.object === undefined) throw new Error('the URI of a new key must give its label: object=LABEL');
  const id = ref.id ?? randomBytes(16);
  const m = await acquireModule(options.modulePath);
  let session: Handle | null = null;
  try {
    const token = findTokenSlot(m, ref);
    session = m.p11.C_OpenSession(token.slot, m.lib.CKF_SERIAL_SESSION | m.lib.CKF_RW_SESSION);
    login(m, session, token, options.pin);
    // Never a second key under the same label or id: the URI must keep naming exactly one key.
    for (const attr of [{ type: m.lib.CKA_LABEL, value: ref.object }, { type: m.lib.CKA_ID, value: id }]) {
      if (findObjects(m, session, [attr]).length > 0) {
        throw new Error(`the token "${token.label}" already holds an object with this ${attr.type === m.lib.CKA_LABEL ? `label "${ref.object}"` : `id ${id.toString('hex')}`}: choose another (no key is replaced)`);
      }
    }
    const common = [
      { type: m.lib.CKA_TOKEN, value: true },
      { type: m.lib.CKA_LABEL, value: ref.object },
      { type: m.lib.CKA_ID, value: id },
    ];
    const ec = keyType in EC_PARAMS;
    const publicTemplate = [
      ...common,
      { type: m.lib.CKA_VERIFY, value: true },
      { type: m.lib.CKA_ENCRYPT, value: false },
      { type: m.lib.CKA_WRAP, value: false },
      ...(ec
        ? [{ type: m.lib.CKA_EC_PARAMS, value: EC_PARAMS[keyType] }]
        : [
            { type: m.lib.CKA_MODULUS_BITS, value: 3072 },
            { type: m.lib.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
          ]),
    ];
    const privateTemplate = [
      ...common,
      { type: m.lib.CKA_PRIVATE, value: true },
      { type: m.lib.CKA_SENSITIVE, value: true },
      { type: m.lib.CKA_EXTRACTABLE, value: false },
      { type: m.lib.CKA_SIGN, value: true },
      // A CA key signs, and does nothing else.
      { type: m.lib.CKA_DECRYPT, value: false },
      { type: m.lib.CKA_UNWRAP, value: false },
      { type: m.lib.CKA_DERIVE, value: false },
    ];
    const mechanism = { mechanism: ec ? m.lib.CKM_EC_KEY_PAIR_GEN : m.lib.CKM_RSA_PKCS_KEY_PAIR_GEN };
    await m.p11.C_GenerateKeyPairAsync(session, mechanism, publicTemplate, privateTemplate);
    const keyRef = { ...ref, id };
    const key = findTokenKey(m, session, { object: keyRef.object, id }, token.label);
    if (!key.publicKey) throw new Error(`the token did not keep the public key of ${describeKeyRef(keyRef)}`);
    return { uri: formatPkcs11Uri({ token: token.label, object: ref.object, id }), publicKey: key.publicKey, spkiDer: spkiOf(key.publicKey) };
  } finally {
    if (session) m.p11.C_CloseSession(session);
    m.release();
  }
}
