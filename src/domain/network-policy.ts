import { isIP } from 'node:net';

/**
 * Which addresses a webhook may not reach (SSRF): loopback, private, link-local (cloud
 * metadata 169.254.169.254), unspecified, CGNAT, multicast and reserved ranges, in IPv4 and
 * in their IPv6 forms (IPv4-mapped, IPv4-compatible, NAT64). Pure.
 */
const V4_BLOCKED: Array<[number, number]> = [
  ['0.0.0.0', 8], // "this network", incl. 0.0.0.0
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, cloud metadata
  ['172.16.0.0', 12],
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.168.0.0', 16],
  ['198.18.0.0', 15], // benchmarking
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
].map(([net, bits]) => [v4ToInt(net as string), bits as number]);

function v4ToInt(ip: string): number {
  return ip.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
}

function v4Blocked(n: number): boolean {
  return V4_BLOCKED.some(([net, bits]) => Math.floor(n / 2 ** (32 - bits)) === Math.floor(net / 2 ** (32 - bits)));
}

/** The eight 16-bit groups of an IPv6 address (with or without an embedded dotted IPv4 tail, zone id dropped). */
function v6Groups(ip: string): number[] {
  let text = ip.split('%')[0].toLowerCase();
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const n = v4ToInt(dotted[1]);
    text = `${text.slice(0, -dotted[1].length)}${Math.floor(n / 65536).toString(16)}:${(n % 65536).toString(16)}`;
  }
  const [head, rest] = text.includes('::') ? text.split('::') : [text, null];
  const parse = (s: string) => (s ? s.split(':').filter((g) => g !== '').map((g) => parseInt(g, 16)) : []);
  const h = parse(head);
  const r = rest === null ? [] : parse(rest);
  return rest === null ? h : [...h, ...new Array<number>(8 - h.length - r.length).fill(0), ...r];
}

/** True when `ip` (a literal IPv4 or IPv6 address) must not be a webhook target. Not an IP: false. */
export function isNonPublicAddress(ip: string): boolean {
  const address = ip.replace(/^\[|\]$/g, '');
  const version = isIP(address.split('%')[0]);
  if (version === 4) return v4Blocked(v4ToInt(address));
  if (version !== 6) return false;
  const g = v6Groups(address);
  const embeddedV4 = () => g[6] * 65536 + g[7];
  const zeroPrefix = (n: number) => g.slice(0, n).every((x) => x === 0);
  if (zeroPrefix(8)) return true; // ::
  if (zeroPrefix(7) && g[7] === 1) return true; // ::1
  if (zeroPrefix(5) && g[5] === 0xffff) return v4Blocked(embeddedV4()); // ::ffff:a.b.c.d (IPv4-mapped)
  if (zeroPrefix(6)) return true; // ::a.b.c.d (IPv4-compatible, deprecated)
  if (g[0] === 0x64 && g[1] === 0xff9b && g.slice(2, 6).every((x) => x === 0)) return v4Blocked(embeddedV4()); // NAT64
  if ((g[0] & 0xfe00) === 0xfc00) return true; // fc00::/7 unique local
  if ((g[0] & 0xffc0) === 0xfe80) return true; // fe80::/10 link-local
  if ((g[0] & 0xffc0) === 0xfec0) return true; // fec0::/10 site-local (deprecated)
  if ((g[0] & 0xff00) === 0xff00) return true; // multicast
  return false;
}

export const PRIVATE_NETWORK_REFUSAL =
  'webhook targets on loopback, private or link-local networks are refused (set WEBHOOK_ALLOW_PRIVATE_NETWORKS=true to allow them)';
