/**
 * serialOrder puts CRL entry lines in the DER order of their serials (numeric: length, then hex
 * text), whatever order the database returned them in: mixed serial lengths, serials whose leading
 * digits are equal (the numeric key ties and the text decides), one entry, none.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { serialOrder } from '../src/storage/repos/serial-order.ts';

const line = (serial: string, i: number) => `${serial} ${1_700_000_000 + i} keyCompromise`;
const ordered = (lines: string[]) => Array.from(serialOrder(lines), (i) => lines[i].split(' ')[0]);
const numeric = (serials: string[]) => [...serials].sort((a, b) => (BigInt(`0x${a}`) < BigInt(`0x${b}`) ? -1 : 1));

function shuffle<T>(xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = randomBytes(4).readUInt32BE() % (i + 1);
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
  return xs;
}

describe('serialOrder', () => {
  it('orders by serial numerically across lengths, with ties on the leading digits broken by the rest', () => {
    const serials = new Set<string>(['1', 'a', 'f', '10', 'ff', '100', 'fffffffffffff', '1000000000000', '10000000000000']);
    for (let i = 0; i < 2_000; i++) serials.add(`4${'0'.repeat(20)}${randomBytes(9).toString('hex')}`); // equal leading 13+ digits
    for (let i = 0; i < 2_000; i++) serials.add(randomBytes(20).toString('hex').replace(/^0+/, ''));
    for (let i = 0; i < 200; i++) serials.add(randomBytes(1 + (i % 25)).toString('hex').replace(/^0+/, '') || '1');
    const lines = shuffle([...serials].map(line));
    expect(ordered(lines)).toEqual(numeric([...serials]));
  });

  it('keeps 300k random serials in order (the key packs the index in the low bits)', () => {
    const hex = randomBytes(20 * 300_000).toString('hex');
    const lines = Array.from({ length: 300_000 }, (_, i) => line(hex.slice(40 * i, 40 * i + 40).replace(/^0+/, ''), i));
    const serials = ordered(lines);
    let inOrder = true;
    for (let i = 1; i < serials.length; i++) {
      const [a, b] = [serials[i - 1], serials[i]];
      if (!(a.length < b.length || (a.length === b.length && a < b))) inOrder = false;
    }
    expect(inOrder).toBe(true);
    expect(new Set(serials).size).toBe(lines.length);
  });

  it('one entry and none', () => {
    expect(ordered([line('abc', 0)])).toEqual(['abc']);
    expect(serialOrder([])).toHaveLength(0);
  });
});
