/**
 * A CA key in a PKCS#11 token as a KeySigner: every signature is made by the token (the key
 * never enters this process). EC: CKM_ECDSA over the SHA-256/384 digest computed here, the
 * token's r||s turned into DER; RSA: CKM_SHA256_RSA_PKCS. Signatures run in libuv's thread pool
 * (pkcs11js C_SignAsync), each on a session of its own from a bounded pool.
 */
import { createHash, type KeyObject } from 'node:crypto';
import { spkiOf } from '../../keys.ts';
import type { KeySigner } from '../key-signer.ts';
import { ecdsaRawToDer } from '../ecdsa-signature.ts';
import { acquireModule, ckrOf, findTokenSlot, login, type Handle, type LoadedModule } from './pkcs11-module.ts';
import { parsePkcs11Uri } from './pkcs11-uri.ts';
import { SessionPool } from './session-pool.ts';
import { findTokenKey, type TokenKey } from './token-key.ts';

export interface Pkcs11SignerOptions {
  /** RFC 7512 URI of the private key (DEVICE_CA_KEY_URI). */
  uri: string;
  /** PKCS11_MODULE_PATH. */
  modulePath: string;
  /** The user PIN (read from PKCS11_PIN_FILE by the caller). */
  pin: string;
  /** Sessions signing at once (PKCS11_SESSIONS, default 4). */
  maxSessions?: number;
  /** The CA certificate's key: the public key when the token holds no public key object (checked by a test signature). */
  certificatePublicKey?: KeyObject;
}

export const DEFAULT_PKCS11_SESSIONS = 4;

/** Opens the token and the key; every failure is a clear Error naming what to fix, and releases what it opened. */
export async function openPkcs11Signer(options: Pkcs11SignerOptions): Promise<KeySigner> {
  const ref = parsePkcs11Uri(options.uri);
  const m = await acquireModule(options.modulePath);
  let first: Handle | null = null;
  try {
    const token = findTokenSlot(m, ref);
    const open = () => m.p11.C_OpenSession(token.slot, m.lib.CKF_SERIAL_SESSION);
    first = open();
    login(m, first, token, options.pin);
    const key = findTokenKey(m, first, ref, token.label);
    const publicKey = key.publicKey ?? options.certificatePublicKey;
    if (!publicKey) throw new Error(`the token "${token.label}" holds no public key for ${options.uri}, and no CA certificate was given to take it from`);
    const pool = new SessionPool<Handle>(options.maxSessions ?? DEFAULT_PKCS11_SESSIONS, () => openLoggedIn(m, open, token, options.pin), (s) => m.p11.C_CloseSession(s));
    pool.adopt(first);
    return tokenSigner(m, pool, key, publicKey, options.uri, (session) => findTokenKey(m, session, ref, token.label).handle);
  } catch (e) {
    if (first) m.p11.C_CloseSession(first);
    m.release();
    throw e;
  }
}

/** A new session is logged in already when another one is; after the token lost the login (all sessions closed by it), log in again. */
function openLoggedIn(m: LoadedModule, open: () => Handle, token: { label: string; serial: string }, pin: string): Handle {
  const s = open();
  try {
    login(m, s, token, pin);
  } catch (e) {
    m.p11.C_CloseSession(s);
    throw e;
  }
  return s;
}

/**
 * One signature on a session of the pool (asynchronous, or synchronous for the CRL builder).
 * A failed session is closed; `refind` looks the key up again (a handle is void once the token
 * logged the application out).
 */
function tokenOperations(m: LoadedModule, pool: SessionPool<Handle>, key: TokenKey, findHandle: (s: Handle) => Handle) {
  const mechanism = { mechanism: key.mechanism === 'ecdsa' ? m.lib.CKM_ECDSA : m.lib.CKM_SHA256_RSA_PKCS };
  let handle = key.handle;
  const begin = (session: Handle, refind: boolean) => {
    if (refind) handle = findHandle(session);
    m.p11.C_SignInit(session, mechanism, handle);
  };
  return {
    async signAsync(data: Buffer, refind = false): Promise<Buffer> {
      const session = await pool.acquire();
      try {
        begin(session, refind);
        const raw = await m.p11.C_SignAsync(session, data, Buffer.alloc(key.signatureSize));
        pool.release(session);
        return raw;
      } catch (e) {
        pool.release(session, true);
        throw e;
      }
    },
    signNow(data: Buffer, refind = false): Buffer {
      const session = pool.acquireNow();
      try {
        begin(session, refind);
        const raw = m.p11.C_Sign(session, data, Buffer.alloc(key.signatureSize));
        pool.release(session);
        return raw;
      } catch (e) {
        pool.release(session, true);
        throw e;
      }
    },
  };
}

function tokenSigner(m: LoadedModule, pool: SessionPool<Handle>, key: TokenKey, publicKey: KeyObject, uri: string, findHandle: (s: Handle) => Handle): KeySigner {
  const ops = tokenOperations(m, pool, key, findHandle);
  const input = (tbs: Uint8Array): Buffer =>
    key.mechanism === 'ecdsa' ? createHash(key.hash).update(tbs).digest() : Buffer.from(tbs.buffer, tbs.byteOffset, tbs.byteLength);
  const output = (raw: Buffer): Buffer => (key.mechanism === 'ecdsa' ? ecdsaRawToDer(raw) : Buffer.from(raw));
  const failed = (e: unknown) => new Error(`the PKCS#11 token could not sign with ${uri}: ${ckrOf(e) ?? (e as Error).message}`);
  const inFlight = new Set<Promise<unknown>>();
  let closed = false;

  return {
    kind: 'pkcs11',
    keyType: key.keyType,
    algorithmIdentifierDer: key.algorithmIdentifierDer,
    hash: key.hash,
    publicKey,
    spkiDer: spkiOf(publicKey),
    label: uri,
    async sign(tbs) {
      const data = input(tbs);
      // A session the token dropped (closed, logged out, device reset) fails once: retry on a fresh one.
      const op = ops.signAsync(data).catch(() => {
        pool.discardIdle();
        return ops.signAsync(data, true);
      });
      inFlight.add(op);
      try {
        return output(await op);
      } catch (e) {
        throw failed(e);
      } finally {
        inFlight.delete(op);
      }
    },
    signSync(tbs) {
      const data = input(tbs);
      try {
        let raw: Buffer;
        try {
          raw = ops.signNow(data);
        } catch {
          pool.discardIdle();
          raw = ops.signNow(data, true);
        }
        return output(raw);
      } catch (e) {
        throw failed(e);
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      await Promise.allSettled([...inFlight]);
      pool.closeIdle();
      m.release();
    },
  };
}
