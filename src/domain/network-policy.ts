import { BlockList, isIP } from 'node:net';

/**
 * Which addresses a webhook may not reach (SSRF): loopback, private, link-local (cloud
 * metadata 169.254.169.254), unspecified, CGNAT, multicast and reserved ranges, and every
 * IPv6 range that embeds or translates to an IPv4 address (IPv4-mapped, IPv4-translated,
 * IPv4-compatible, NAT64, 6to4, Teredo): the embedded address could be any of the above;
 * and the discard-only prefix 100::/64. Matching is node:net's BlockList, not hand parsing. Pure.
 */
// One list per family: a BlockList matches IPv4 addresses against IPv6 rules through their
// mapped form, so 8.8.8.8 would hit ::ffff:0:0/96 in a shared list.
const BLOCKED_V4 = new BlockList();
const BLOCKED_V6 = new BlockList();
for (const [net, bits] of [
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
] as const) {
  BLOCKED_V4.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [
  ['::', 96], // ::, ::1 and IPv4-compatible ::a.b.c.d
  ['::ffff:0:0', 96], // IPv4-mapped
  ['::ffff:0:0:0', 96], // IPv4-translated (RFC 2765 SIIT): ::ffff:0:a9fe:a9fe reaches 169.254.169.254
  ['100::', 64], // discard-only (RFC 6666)
  ['64:ff9b::', 96], // NAT64 (well-known prefix)
  ['64:ff9b:1::', 48], // NAT64 (local use)
  ['2001::', 32], // Teredo
  ['2002::', 16], // 6to4
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
] as const) {
  BLOCKED_V6.addSubnet(net, bits, 'ipv6');
}

/** True when `ip` (a literal IPv4 or IPv6 address, brackets and zone id allowed) must not be a webhook target. Not an IP: false. */
export function isNonPublicAddress(ip: string): boolean {
  const address = ip.replace(/^\[|\]$/g, '').split('%')[0] ?? '';
  const version = isIP(address);
  if (version === 0) return false;
  return version === 4 ? BLOCKED_V4.check(address, 'ipv4') : BLOCKED_V6.check(address, 'ipv6');
}

export const PRIVATE_NETWORK_REFUSAL =
  'webhook targets on loopback, private or link-local networks are refused (set WEBHOOK_ALLOW_PRIVATE_NETWORKS=true to allow them)';
