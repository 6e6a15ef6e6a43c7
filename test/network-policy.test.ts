import { describe, expect, it } from 'vitest';
import { isNonPublicAddress } from '../src/domain/network-policy.ts';

describe('SSRF guard: IPv6 transition and translation ranges', () => {
  it('refuses IPv4-mapped (::ffff:0:0/96), NAT64 (64:ff9b::/96, 64:ff9b:1::/48), 6to4 (2002::/16) and Teredo (2001::/32) whatever they embed', () => {
    const refused = [
      '::ffff:8.8.8.8', '::ffff:808:808', '::ffff:0:0', '[::ffff:1.1.1.1]',
      '64:ff9b::8.8.8.8', '64:ff9b::808:808', '64:ff9b::',
      '64:ff9b:1::1', '64:ff9b:1:ffff:ffff:ffff:ffff:ffff', '64:ff9b:1:abcd::8.8.8.8',
      '2002::1', '2002:808:808::1', '2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
      '2001::1', '2001:0:4136:e378:8000:63bf:3fff:fdd2', '2001:0:ffff:ffff:ffff:ffff:ffff:ffff',
      'fe80::1%eth0', '::1', '::', '127.0.0.1', '10.1.2.3', '169.254.169.254', '0:0:0:0:0:0:0:1',
    ];
    const allowed = [
      '8.8.8.8', '2001:4860:4860::8888', '2001:1::1', '2003::1', '2001:db9::1', '64:ff9b:2::1', '64:ff9a::1', '2606:4700:4700::1111', 'example.com', 'not an address',
    ];
    for (const ip of refused) expect(isNonPublicAddress(ip), ip).toBe(true);
    for (const ip of allowed) expect(isNonPublicAddress(ip), ip).toBe(false);
  });
});

describe('SSRF guard: IPv4-translated and discard-only ranges (red-team finding)', () => {
  it('refuses IPv4-translated ::ffff:0:0:0/96 (reaches 169.254.169.254) and discard-only 100::/64', () => {
    const refused = [
      '::ffff:0:a9fe:a9fe', // 169.254.169.254, IPv4-translated (RFC 2765)
      '::ffff:0:169.254.169.254',
      '::ffff:0:7f00:1', // 127.0.0.1
      '::ffff:0:808:808', // whatever it embeds
      '[::ffff:0:a9fe:a9fe]',
      '100::', '100::1', '100::ffff:ffff:ffff:ffff', '100::a9fe:a9fe',
    ];
    const allowed = ['100:0:0:1::1', '101::1', '::fffe:0:808:808', '::1:ffff:0:808:808'];
    for (const ip of refused) expect(isNonPublicAddress(ip), ip).toBe(true);
    for (const ip of allowed) expect(isNonPublicAddress(ip), ip).toBe(false);
  });
});
