/** The one PEM encoder: 64-character base64 lines, RFC 7468. */
export function toPem(label: string, der: Uint8Array): string {
  return pemBytes(label, der).toString('latin1');
}

/**
 * toPem as bytes, written straight into one buffer (a 45 MB CRL becomes 61 MB of PEM without a
 * string per line): base64 in blocks of whole lines, each written where its lines go and then
 * spread apart in place, last line first, to make room for the line breaks.
 */
export function pemBytes(label: string, der: Uint8Array): Buffer {
  const src = Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  const header = `-----BEGIN ${label}-----\n`;
  const footer = `-----END ${label}-----\n`;
  const b64Length = Math.ceil(src.length / 3) * 4;
  const lineCount = Math.ceil(b64Length / 64);
  const out = Buffer.allocUnsafe(header.length + b64Length + lineCount + footer.length);
  const body = out.write(header, 0, 'latin1');
  const BLOCK = 48 * 16_384; // input bytes per base64 call: whole 64-character lines
  for (let i = 0; i < src.length; i += BLOCK) {
    const firstLine = i / 48;
    const start = body + firstLine * 65;
    const chars = out.write(src.toString('base64', i, Math.min(src.length, i + BLOCK)), start, 'latin1');
    for (let k = Math.ceil(chars / 64) - 1; k >= 0; k--) {
      const from = start + k * 64;
      const to = Math.min(from + 64, start + chars);
      out.copyWithin(start + k * 65, from, to);
      out[start + k * 65 + (to - from)] = 0x0a;
    }
  }
  out.write(footer, body + b64Length + lineCount, 'latin1');
  return out;
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
