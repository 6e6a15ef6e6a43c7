/**
 * RFC 7512 `pkcs11:` URIs naming a CA private key in a token, e.g.
 * `pkcs11:token=certfleet;object=device-ca` or `pkcs11:serial=1a2b;id=%01%02`.
 * The PIN never comes from the URI (pin-value / pin-source are refused: PKCS11_PIN_FILE),
 * nor the module (module-path / module-name: PKCS11_MODULE_PATH).
 */

export interface Pkcs11KeyRef {
  /** Token label (CK_TOKEN_INFO.label, without its padding). */
  token?: string;
  manufacturer?: string;
  serial?: string;
  model?: string;
  /** CK_SLOT_ID, decimal. */
  slotId?: bigint;
  /** CKA_LABEL of the key. */
  object?: string;
  /** CKA_ID of the key (bytes). */
  id?: Buffer;
}

const TOKEN_ATTRS = { token: 'token', manufacturer: 'manufacturer', serial: 'serial', model: 'model' } as const;
const REFUSED_QUERY: Record<string, string> = {
  'pin-value': 'the PIN is never part of the URI: put it in the file named by PKCS11_PIN_FILE',
  'pin-source': 'the PIN is read from PKCS11_PIN_FILE, not from a pin-source',
  'module-path': 'the module is set by PKCS11_MODULE_PATH, not in the URI',
  'module-name': 'the module is set by PKCS11_MODULE_PATH, not in the URI',
};

export class Pkcs11UriError extends Error {}

function decode(raw: string, what: string): Buffer {
  if (/%(?![0-9a-fA-F]{2})/.test(raw)) throw new Pkcs11UriError(`bad percent-encoding in ${what}`);
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charAt(i);
    if (c === '%') {
      bytes.push(parseInt(raw.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(...Buffer.from(c, 'utf8'));
  }
  return Buffer.from(bytes);
}

function setOnce(ref: Pkcs11KeyRef, name: string, apply: () => void, seen: Set<string>): void {
  if (seen.has(name)) throw new Pkcs11UriError(`the attribute "${name}" appears twice`);
  seen.add(name);
  apply();
}

/** Parses and checks the URI; a clear error for anything certfleet cannot use unambiguously. */
export function parsePkcs11Uri(uri: string): Pkcs11KeyRef {
  if (!/^pkcs11:/i.test(uri)) throw new Pkcs11UriError(`not a pkcs11: URI (RFC 7512): "${uri.slice(0, 40)}"`);
  const [path = '', query = ''] = uri.slice('pkcs11:'.length).split('?', 2);
  const ref: Pkcs11KeyRef = {};
  const seen = new Set<string>();
  for (const part of path.split(';').filter((p) => p !== '')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new Pkcs11UriError(`bad path attribute "${part}" (expected name=value)`);
    const name = part.slice(0, eq).toLowerCase();
    const value = decode(part.slice(eq + 1), name);
    if (name in TOKEN_ATTRS) setOnce(ref, name, () => (ref[name as keyof typeof TOKEN_ATTRS] = value.toString('utf8')), seen);
    else if (name === 'object') setOnce(ref, name, () => (ref.object = value.toString('utf8')), seen);
    else if (name === 'id') setOnce(ref, name, () => (ref.id = value), seen);
    else if (name === 'slot-id') {
      if (!/^[0-9]{1,20}$/.test(value.toString('latin1'))) throw new Pkcs11UriError('slot-id must be a decimal number');
      setOnce(ref, name, () => (ref.slotId = BigInt(value.toString('latin1'))), seen);
    } else if (name === 'type') {
      if (value.toString('latin1') !== 'private') throw new Pkcs11UriError(`type=${value.toString('latin1')}: the CA key URI names a private key (type=private or no type)`);
      seen.add(name);
    } else throw new Pkcs11UriError(`unsupported attribute "${name}" (certfleet understands token, manufacturer, serial, model, slot-id, object, id, type)`);
  }
  for (const part of query.split('&').filter((p) => p !== '')) {
    const name = part.slice(0, Math.max(0, part.indexOf('='))).toLowerCase() || part.toLowerCase();
    throw new Pkcs11UriError(REFUSED_QUERY[name] ?? `unsupported query attribute "${name}"`);
  }
  if (ref.object === undefined && ref.id === undefined) throw new Pkcs11UriError('the URI must name the key: object=LABEL and/or id=%xx...');
  if (ref.token === undefined && ref.serial === undefined && ref.slotId === undefined) {
    throw new Pkcs11UriError('the URI must name the token: token=LABEL, serial=... or slot-id=...');
  }
  return ref;
}

const encode = (value: Buffer | string): string =>
  [...(typeof value === 'string' ? Buffer.from(value, 'utf8') : value)]
    .map((b) => (/[A-Za-z0-9\-._~]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, '0')}`))
    .join('');

/** The URI of a key (token label, key label, optional CKA_ID), percent-encoded. */
export function formatPkcs11Uri(ref: { token: string; object?: string; id?: Buffer }): string {
  const parts = [`token=${encode(ref.token)}`];
  if (ref.object !== undefined) parts.push(`object=${encode(ref.object)}`);
  if (ref.id !== undefined) parts.push(`id=${[...ref.id].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')}`);
  return `pkcs11:${parts.join(';')};type=private`;
}
