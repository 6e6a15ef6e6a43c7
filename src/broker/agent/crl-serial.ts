/**
 * Does a DER CRL list one serial? One pass over the revokedCertificates entries comparing bytes,
 * no string per entry: the agent asks it for its revoked canary after every bundle, while the
 * broker reloads beside it (hex strings for every entry cost about ten times as much, and a
 * million of them at 1M entries).
 */
import { readTlv, TAG } from '../../domain/der.ts';
import { revokedList } from '../../crl/build-crl.ts';

/** `serialHex`: the serial's magnitude in hex (as X509Certificate.serialNumber gives it). */
export function crlListsSerial(der: Uint8Array, serialHex: string): boolean {
  const digits = serialHex.toLowerCase().replace(/^0+(?=.)/, '');
  let want = Buffer.from(digits.length % 2 ? `0${digits}` : digits, 'hex');
  while (want.length > 1 && want[0] === 0) want = want.subarray(1);
  const list = revokedList(der);
  if (!list) return false;
  for (let off = list.valueStart; off < list.end; ) {
    const entry = readTlv(der, off, list.end);
    const serial = readTlv(der, entry.valueStart, entry.end);
    off = entry.end;
    if (serial.tag !== TAG.INTEGER) continue;
    let start = serial.valueStart;
    while (start < serial.end - 1 && der[start] === 0) start++;
    if (serial.end - start !== want.length) continue;
    if (Buffer.compare(want, Buffer.from(der.buffer, der.byteOffset + start, want.length)) === 0) return true;
  }
  return false;
}
