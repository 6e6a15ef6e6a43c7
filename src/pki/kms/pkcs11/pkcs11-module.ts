/**
 * Loading a PKCS#11 module (through pkcs11js, a native addon loaded only when a token is used),
 * finding the token a URI names and logging in. One module instance per path in the process
 * (C_Initialize may run once per process), counted, finalized when its last user closes.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { PKCS11 } from 'pkcs11js';
import type { Pkcs11KeyRef } from './pkcs11-uri.ts';

export type Pkcs11Lib = typeof import('pkcs11js');
export type Handle = Buffer;

/** Debian's SoftHSM2 module (a symlink to the architecture's copy). */
export const DEFAULT_PKCS11_MODULE_PATH = '/usr/lib/softhsm/libsofthsm2.so';

export interface LoadedModule {
  lib: Pkcs11Lib;
  p11: PKCS11;
  path: string;
  /** Token serial → SHA-256 of the PIN this process logged in with (C_Login answers "already logged in" without checking a PIN). */
  loggedIn: Map<string, string>;
  release(): void;
}

const modules = new Map<string, { module: LoadedModule; refs: number }>();

/** CKR_* name of a pkcs11js error, or null. */
export function ckrOf(e: unknown): string | null {
  const m = /\b(CKR_[A-Z_]+)\b/.exec(e instanceof Error ? e.message : String(e));
  return m?.[1] ?? null;
}

async function loadLib(): Promise<Pkcs11Lib> {
  try {
    return (await import('pkcs11js')).default as unknown as Pkcs11Lib;
  } catch (e) {
    throw new Error(`cannot load the pkcs11js native addon (built by node-gyp at npm install): ${(e as Error).message}`);
  }
}

export async function acquireModule(path: string): Promise<LoadedModule> {
  const known = modules.get(path);
  if (known) {
    known.refs++;
    return known.module;
  }
  if (!existsSync(path)) throw new Error(`the PKCS#11 module PKCS11_MODULE_PATH=${path} does not exist (Debian SoftHSM2: apt-get install softhsm2)`);
  const lib = await loadLib();
  const p11 = new lib.PKCS11();
  try {
    p11.load(path);
  } catch (e) {
    throw new Error(`cannot load the PKCS#11 module PKCS11_MODULE_PATH=${path}: ${(e as Error).message}`);
  }
  try {
    p11.C_Initialize({ flags: lib.CKF_OS_LOCKING_OK });
  } catch (e) {
    if (ckrOf(e) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') {
      p11.close();
      throw new Error(`the PKCS#11 module ${path} failed to initialize: ${(e as Error).message}`);
    }
  }
  const entry = {
    refs: 1,
    module: {
      lib,
      p11,
      path,
      loggedIn: new Map<string, string>(),
      release() {
        if (--entry.refs > 0) return;
        modules.delete(path);
        try {
          p11.C_Finalize();
        } finally {
          p11.close();
        }
      },
    },
  };
  modules.set(path, entry);
  return entry.module;
}

const trimPadded = (s: string) => s.replace(/[\s\0]+$/, '');

export function describeTokenRef(ref: Pkcs11KeyRef): string {
  const parts = [
    ref.token !== undefined && `token "${ref.token}"`,
    ref.serial !== undefined && `serial ${ref.serial}`,
    ref.slotId !== undefined && `slot-id ${ref.slotId}`,
    ref.manufacturer !== undefined && `manufacturer "${ref.manufacturer}"`,
    ref.model !== undefined && `model "${ref.model}"`,
  ];
  return parts.filter(Boolean).join(', ');
}

/** The one slot whose token matches the URI's token attributes; a clear error for none or several. */
export function findTokenSlot(m: LoadedModule, ref: Pkcs11KeyRef): { slot: Handle; label: string; serial: string } {
  const present: string[] = [];
  const matches: { slot: Handle; label: string; serial: string }[] = [];
  for (const slot of m.p11.C_GetSlotList(true)) {
    const info = m.p11.C_GetTokenInfo(slot);
    if (!(info.flags & m.lib.CKF_TOKEN_INITIALIZED)) continue; // a free slot (SoftHSM2 always offers one)
    const t = { label: trimPadded(info.label), serial: trimPadded(info.serialNumber), manufacturer: trimPadded(info.manufacturerID), model: trimPadded(info.model) };
    present.push(`"${t.label}" (serial ${t.serial})`);
    const slotId = slot.length >= 8 ? slot.readBigUInt64LE(0) : BigInt(slot.readUIntLE(0, slot.length));
    if (ref.token !== undefined && ref.token !== t.label) continue;
    if (ref.serial !== undefined && ref.serial !== t.serial) continue;
    if (ref.manufacturer !== undefined && ref.manufacturer !== t.manufacturer) continue;
    if (ref.model !== undefined && ref.model !== t.model) continue;
    if (ref.slotId !== undefined && ref.slotId !== slotId) continue;
    matches.push({ slot, label: t.label, serial: t.serial });
  }
  if (matches.length === 0) {
    throw new Error(`no PKCS#11 token matches ${describeTokenRef(ref)} in ${m.path} (tokens present: ${present.join(', ') || 'none'})`);
  }
  const [match] = matches;
  if (matches.length > 1 || match === undefined) throw new Error(`several PKCS#11 tokens match ${describeTokenRef(ref)}: add serial=... to the URI`);
  return match;
}

/** Logs the application in on the token (once per process and token); a wrong or locked PIN is a clear error that never shows the PIN. */
export function login(m: LoadedModule, session: Handle, token: { label: string; serial: string }, pin: string): void {
  const pinHash = createHash('sha256').update(pin).digest('hex');
  try {
    m.p11.C_Login(session, m.lib.CKU_USER, pin);
    m.loggedIn.set(token.serial, pinHash);
  } catch (e) {
    const ckr = ckrOf(e);
    if (ckr === 'CKR_USER_ALREADY_LOGGED_IN') {
      if (m.loggedIn.has(token.serial) && m.loggedIn.get(token.serial) !== pinHash) {
        throw new Error(`wrong PIN for the PKCS#11 token "${token.label}" (PKCS11_PIN_FILE): it differs from the PIN this process logged in with`);
      }
      return;
    }
    if (ckr === 'CKR_PIN_INCORRECT') throw new Error(`wrong PIN for the PKCS#11 token "${token.label}" (PKCS11_PIN_FILE)`);
    if (ckr === 'CKR_PIN_LOCKED') throw new Error(`the user PIN of the PKCS#11 token "${token.label}" is locked (too many wrong PINs): unlock it with the SO PIN`);
    if (ckr === 'CKR_PIN_LEN_RANGE') throw new Error(`wrong PIN for the PKCS#11 token "${token.label}" (PKCS11_PIN_FILE): its length is out of the token's range`);
    throw new Error(`cannot log in to the PKCS#11 token "${token.label}": ${ckr ?? (e as Error).message}`);
  }
}
