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

/** All PEM blocks with the given label, as DER. */
export function pemBlocks(pem: string, label: string): Buffer[] {
  const re = new RegExp(`-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`, 'g');
  return [...pem.matchAll(re)].map((m) => Buffer.from((m[1] ?? '').replace(/\s+/g, ''), 'base64'));
}
