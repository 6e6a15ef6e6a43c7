/** The one PEM encoder: 64-character base64 lines, RFC 7468. */
export function toPem(label: string, der: Uint8Array): string {
  return pemBytes(label, der).toString('latin1');
}

/** Bytes of the PEM pemBytes makes of `derLength` bytes of DER under `label`. */
export function pemByteLength(label: string, derLength: number): number {
  const b64Length = Math.ceil(derLength / 3) * 4;
  return `-----BEGIN ${label}-----\n`.length + b64Length + Math.ceil(b64Length / 64) + `-----END ${label}-----\n`.length;
}

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
/** 12 bits → their two base64 characters, the first in the low byte (written little-endian, 4 characters at once). */
const PAIRS = new Uint16Array(4096);
for (let i = 0; i < 4096; i++) PAIRS[i] = BASE64.charCodeAt(i >> 6) | (BASE64.charCodeAt(i & 63) << 8);

/**
 * toPem as bytes, in one pass straight into `out` (or a new buffer): every 3 input bytes become 4
 * characters with two table look-ups and one 32-bit store, a line break after each 48 input bytes;
 * no string per block or per line, no second pass moving lines apart (1.5x less CPU than base64
 * blocks spread in place, measured at 50 MB). `out` must have pemByteLength(label, der.length)
 * bytes; the result is a view of it. A caller that writes many large PEMs keeps one `out` (a
 * fresh 60 MB buffer costs its page faults every time).
 */
export function pemBytes(label: string, der: Uint8Array, out?: Buffer): Buffer {
  const size = pemByteLength(label, der.length);
  const target = out ?? Buffer.allocUnsafe(size);
  if (target.length < size) throw new RangeError(`PEM output buffer too small: ${target.length} < ${size}`);
  const o = pemLines(der, 0, der.length - (der.length % 48), target, target.write(`-----BEGIN ${label}-----\n`, 0, 'latin1'));
  return pemEnd(label, der, target, o);
}

/** The lines of der[from, to) (whole 48-byte groups) into target from `o`; returns the end. Also the CRL thread's share of a PEM (support/crl-thread-worker.ts). */
export function pemLines(der: Uint8Array, from: number, to: number, target: Buffer, o: number): number {
  const view = new DataView(target.buffer, target.byteOffset, target.byteLength);
  for (let i = from; i < to; i += 48) {
    for (let k = i; k < i + 48; k += 3) {
      const v = (der[k]! << 16) | (der[k + 1]! << 8) | der[k + 2]!;
      view.setUint32(o, PAIRS[v >>> 12]! | (PAIRS[v & 4095]! << 16), true);
      o += 4;
    }
    target[o++] = 0x0a;
  }
  return o;
}

/** The last (partial) line and the END line, from `o`; returns the PEM. */
function pemEnd(label: string, der: Uint8Array, target: Buffer, o: number): Buffer {
  const n = der.length;
  const whole = n - (n % 48);
  if (whole < n) {
    o += target.write(Buffer.from(der.buffer, der.byteOffset + whole, n - whole).toString('base64'), o, 'latin1');
    target[o++] = 0x0a;
  }
  o += target.write(`-----END ${label}-----\n`, o, 'latin1');
  return target.subarray(0, o);
}

/**
 * pemBytes with the last `share` of the whole lines encoded elsewhere at the same time (another
 * thread, over shared memory: `encodeLines` gets those DER bytes and where their lines go in
 * `out`, and resolves with where they end). The same bytes as pemBytes.
 */
export async function pemBytesSplit(label: string, der: Uint8Array, out: Buffer, share: number, encodeLines: (der: Uint8Array, outStart: number) => Promise<number>): Promise<Buffer> {
  const size = pemByteLength(label, der.length);
  if (out.length < size) throw new RangeError(`PEM output buffer too small: ${out.length} < ${size}`);
  const lines = Math.floor(der.length / 48);
  const elsewhere = Math.min(lines, Math.max(0, Math.floor(lines * share)));
  const mine = lines - elsewhere;
  const head = out.write(`-----BEGIN ${label}-----\n`, 0, 'latin1');
  const theirs = encodeLines(der.subarray(mine * 48, lines * 48), head + mine * 65);
  theirs.catch(() => undefined); // awaited below
  const o = pemLines(der, 0, mine * 48, out, head);
  const end = await theirs;
  if (end !== o + elsewhere * 65) throw new Error(`PEM lines elsewhere ended at ${end}, expected ${o + elsewhere * 65}`);
  return pemEnd(label, der, out, end);
}

/** A PEM block whose body is not base64 (RFC 7468), or that has no END line. */
export class PemError extends Error {}

/**
 * The one PEM decoder: every block with the given label, as DER, in order (text between blocks
 * is ignored, as RFC 7468 allows). One pass with indexOf over the text, so a 60 MB CRL costs
 * no regular-expression backtracking; the base64 decoder skips the line breaks itself.
 */
export function pemBlocks(pem: string, label: string): Buffer[] {
  const begin = `-----BEGIN ${label}-----`;
  const end = `-----END ${label}-----`;
  const blocks: Buffer[] = [];
  for (let at = pem.indexOf(begin); at >= 0; at = pem.indexOf(begin, at)) {
    const bodyStart = at + begin.length;
    const bodyEnd = pem.indexOf(end, bodyStart);
    if (bodyEnd < 0) throw new PemError(`a "${begin}" block has no "${end}" line`);
    const body = pem.slice(bodyStart, bodyEnd);
    if (!/^[A-Za-z0-9+/\s]*={0,2}\s*$/.test(body)) throw new PemError(`the body of a ${label} PEM block is not base64`);
    blocks.push(Buffer.from(body, 'base64'));
    at = bodyEnd + end.length;
  }
  return blocks;
}
