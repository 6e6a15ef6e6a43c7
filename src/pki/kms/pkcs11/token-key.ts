/**
 * The private key a URI names in a token: found by label and/or CKA_ID, its type checked
 * (EC P-256/P-384 or RSA >= 2048, allowed to sign), its public key read from the token.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { nullValue, oid, sequence } from '../../../domain/der.ts';
import type { Pkcs11KeyRef } from './pkcs11-uri.ts';
import type { Handle, LoadedModule } from './pkcs11-module.ts';

export interface TokenKey {
  handle: Handle;
  keyType: string;
  hash: 'sha256' | 'sha384';
  algorithmIdentifierDer: Buffer;
  /** 'ecdsa': CKM_ECDSA over a digest computed here; 'rsa': CKM_SHA256_RSA_PKCS over the data. */
  mechanism: 'ecdsa' | 'rsa';
  /** Signature bytes the token returns (r||s, or the RSA modulus size). */
  signatureSize: number;
  /** From the token's public key object or the private key's public attributes; null when the token has neither (an EC key without its public object). */
  publicKey: KeyObject | null;
}

const CURVES: Record<string, { name: string; crv: string; size: number; hash: 'sha256' | 'sha384'; alg: string }> = {
  '06082a8648ce3d030107': { name: 'ec-p256', crv: 'P-256', size: 32, hash: 'sha256', alg: '1.2.840.10045.4.3.2' },
  '06052b81040022': { name: 'ec-p384', crv: 'P-384', size: 48, hash: 'sha384', alg: '1.2.840.10045.4.3.3' },
};
const KNOWN_CURVES: Record<string, string> = { '06052b81040023': 'P-521', '06052b8104000a': 'secp256k1' };

const ulong = (b: Buffer): number => Number(b.length >= 8 ? b.readBigUInt64LE(0) : BigInt(b.readUIntLE(0, b.length)));

export function findObjects(m: LoadedModule, session: Handle, template: { type: number; value?: number | boolean | string | Buffer }[]): Handle[] {
  m.p11.C_FindObjectsInit(session, template);
  try {
    return m.p11.C_FindObjects(session, 16);
  } finally {
    m.p11.C_FindObjectsFinal(session);
  }
}

function keyTemplate(m: LoadedModule, ref: Pkcs11KeyRef, cls: number) {
  const t: { type: number; value?: number | boolean | string | Buffer }[] = [{ type: m.lib.CKA_CLASS, value: cls }];
  if (ref.object !== undefined) t.push({ type: m.lib.CKA_LABEL, value: ref.object });
  if (ref.id !== undefined) t.push({ type: m.lib.CKA_ID, value: ref.id });
  return t;
}

export function describeKeyRef(ref: Pkcs11KeyRef): string {
  return [ref.object !== undefined && `object "${ref.object}"`, ref.id !== undefined && `id ${ref.id.toString('hex')}`].filter(Boolean).join(' ');
}

/** The values of the attributes asked for, in their order (a module answering fewer is refused). */
function attrs<const T extends readonly number[]>(m: LoadedModule, session: Handle, handle: Handle, types: T): { [K in keyof T]: Buffer } {
  const values = m.p11.C_GetAttributeValue(session, handle, types.map((type) => ({ type }))).map((a) => a.value);
  if (values.length !== types.length || values.some((v) => v === undefined)) throw new Error(`the PKCS#11 module answered ${values.length} of ${types.length} attributes`);
  return values as { [K in keyof T]: Buffer };
}

/** EC_POINT: the DER OCTET STRING around the uncompressed point (PKCS#11 2.40), or the bare point (some modules). */
function uncompressedPoint(ecPoint: Buffer, size: number): Buffer {
  if (ecPoint.length === 1 + 2 * size && ecPoint[0] === 4) return ecPoint;
  if (ecPoint[0] === 0x04 && ecPoint.length === 3 + 2 * size && ecPoint[1] === 1 + 2 * size) return ecPoint.subarray(2);
  throw new Error('the token returned an EC point certfleet cannot read');
}

function ecKey(m: LoadedModule, session: Handle, handle: Handle, ref: Pkcs11KeyRef, tokenLabel: string): TokenKey {
  const [params] = attrs(m, session, handle, [m.lib.CKA_EC_PARAMS]);
  const curve = CURVES[params.toString('hex')];
  if (!curve) {
    const name = KNOWN_CURVES[params.toString('hex')] ?? `parameters ${params.toString('hex')}`;
    throw new Error(`unsupported CA key type in token "${tokenLabel}" (${describeKeyRef(ref)}): EC ${name} (certfleet signs with EC P-256, P-384 or RSA >= 2048)`);
  }
  let publicKey: KeyObject | null = null;
  const pub = findObjects(m, session, keyTemplate(m, ref, m.lib.CKO_PUBLIC_KEY));
  const [pubHandle] = pub;
  if (pub.length === 1 && pubHandle !== undefined) {
    const [ecPoint] = attrs(m, session, pubHandle, [m.lib.CKA_EC_POINT]);
    const point = uncompressedPoint(ecPoint, curve.size);
    const [x, y] = [point.subarray(1, 1 + curve.size), point.subarray(1 + curve.size)].map((b) => b.toString('base64url'));
    publicKey = createPublicKey({ key: { kty: 'EC', crv: curve.crv, x, y }, format: 'jwk' });
  }
  return {
    handle,
    keyType: curve.name,
    hash: curve.hash,
    algorithmIdentifierDer: sequence(oid(curve.alg)),
    mechanism: 'ecdsa',
    signatureSize: 2 * curve.size,
    publicKey,
  };
}

function rsaKey(m: LoadedModule, session: Handle, handle: Handle, ref: Pkcs11KeyRef, tokenLabel: string): TokenKey {
  const [modulus, exponent] = attrs(m, session, handle, [m.lib.CKA_MODULUS, m.lib.CKA_PUBLIC_EXPONENT]);
  const n = modulus.subarray(modulus.findIndex((b) => b !== 0));
  const bits = n.length * 8 - Math.clz32(n[0] ?? 0) + 24;
  if (bits < 2048) throw new Error(`unsupported CA key type in token "${tokenLabel}" (${describeKeyRef(ref)}): RSA-${bits} is too weak (RSA >= 2048 or EC P-256/P-384)`);
  const publicKey = createPublicKey({ key: { kty: 'RSA', n: n.toString('base64url'), e: exponent.toString('base64url') }, format: 'jwk' });
  return {
    handle,
    keyType: `rsa-${bits}`,
    hash: 'sha256',
    algorithmIdentifierDer: sequence(oid('1.2.840.113549.1.1.11'), nullValue()),
    mechanism: 'rsa',
    signatureSize: n.length,
    publicKey,
  };
}

/** The private key of the URI in the token; refused when absent, ambiguous, not a signing key or of an unsupported type. */
export function findTokenKey(m: LoadedModule, session: Handle, ref: Pkcs11KeyRef, tokenLabel: string): TokenKey {
  const found = findObjects(m, session, keyTemplate(m, ref, m.lib.CKO_PRIVATE_KEY));
  if (found.length === 0) {
    const other = findObjects(m, session, keyTemplate(m, ref, m.lib.CKO_SECRET_KEY));
    if (other.length > 0) throw new Error(`unsupported CA key type in token "${tokenLabel}" (${describeKeyRef(ref)}): a secret key, not a private key`);
    throw new Error(`no private key with ${describeKeyRef(ref)} in the PKCS#11 token "${tokenLabel}" (list them: pkcs11-tool --module ... --token-label "${tokenLabel}" --login --list-objects)`);
  }
  const [key] = found;
  if (found.length > 1 || key === undefined) throw new Error(`${found.length} private keys match ${describeKeyRef(ref)} in token "${tokenLabel}": add id=... to the URI`);
  const [keyType, canSign] = attrs(m, session, key, [m.lib.CKA_KEY_TYPE, m.lib.CKA_SIGN]);
  if (canSign[0] !== 1) throw new Error(`the key ${describeKeyRef(ref)} in token "${tokenLabel}" is not allowed to sign (CKA_SIGN false)`);
  const type = ulong(keyType);
  if (type === m.lib.CKK_EC) return ecKey(m, session, key, ref, tokenLabel);
  if (type === m.lib.CKK_RSA) return rsaKey(m, session, key, ref, tokenLabel);
  throw new Error(`unsupported CA key type in token "${tokenLabel}" (${describeKeyRef(ref)}): CKK 0x${type.toString(16)} (certfleet signs with EC P-256, P-384 or RSA >= 2048)`);
}
