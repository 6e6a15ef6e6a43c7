/** The one PEM encoder: 64-character base64 lines, RFC 7468. */
export function toPem(label: string, der: Uint8Array): string {
  return pemBytes(label, der).toString('latin1');
}

/**
 * toPem as bytes, written straight into one buffer (a 45 MB CRL becomes 61 MB of PEM without a
 * string per line): base64 in blocks of whole lines, then copied line by line.
 */
export function pemBytes(label: string, der: Uint8Array): Buffer {
  const src = Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  const header = `-----BEGIN ${label}-----\n`;
  const footer = `-----END ${label}-----\n`;
  const b64Length = Math.ceil(src.length / 3) * 4;
  const lineCount = Math.ceil(b64Length / 64);
  const out = Buffer.allocUnsafe(header.length + b64Length + lineCount + footer.length);
  let off = out.write(header, 0, 'latin1');
  const BLOCK = 48 * 16_384; // input bytes per base64 call: whole 64-char lines
  for (let i = 0; i < src.length; i += BLOCK) {
    const b64 = Buffer.from(src.toString('base64', i, Math.min(src.length, i + BLOCK)), 'latin1');
    for (let j = 0; j < b64.length; j += 64) {
      off += b64.copy(out, off, j, Math.min(b64.length, j + 64));
      out[off++] = 0x0a;
    }
  }
  off += out.write(footer, off, 'latin1');
  return off === out.length ? out : out.subarray(0, off);
}

/** All PEM blocks with the given label, as DER. */
export function pemBlocks(pem: string, label: string): Buffer[] {
  const re = new RegExp(`-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`, 'g');
  return [...pem.matchAll(re)].map((m) => Buffer.from(m[1].replace(/\s+/g, ''), 'base64'));
}
