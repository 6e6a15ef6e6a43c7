/** Which revocations a reload newly delivered to the broker, and the kick retries (no broker needed). */
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { buildCrl, encodeRevokedEntries, newlyRevokedSerials, type CrlSigner } from '../src/crl/build-crl.ts';
import { createRevokedSessions } from '../src/broker/revoked-sessions.ts';
import { createCrlSigner } from '../src/pki/crl-signer.ts';
import { sequence } from '../src/domain/der.ts';

const signer: CrlSigner = createCrlSigner(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
const now = new Date('2030-01-01T00:00:00Z');
let number = 1n;
function crl(serials: string[]): Buffer {
  return buildCrl({
    issuerNameDer: sequence(),
    authorityKeyId: Buffer.from('0102', 'hex'),
    thisUpdate: now,
    nextUpdate: new Date(now.getTime() + 86_400_000),
    crlNumber: number++,
    revoked: encodeRevokedEntries(serials.map((serialHex) => ({ serialHex, revokedAt: now, reasonCode: 4 }))),
    signer,
  });
}

describe('newlyRevokedSerials', () => {
  it('lists the serials the new CRL adds, in lowercase hex without leading zeros', () => {
    const a = crl(['01', '0a', 'ff', '1234']);
    const b = crl(['01', '05', '0a', '80', 'ff', '1234', 'abcdef0123456789abcdef0123456789']);
    expect(newlyRevokedSerials(a, b)).toEqual(['5', '80', 'abcdef0123456789abcdef0123456789']);
    expect(newlyRevokedSerials(b, b)).toEqual([]);
    expect(newlyRevokedSerials(b, a)).toEqual([]); // entries that left (expired) are not "new"
    expect(newlyRevokedSerials(crl([]), a)).toEqual(['1', 'a', 'ff', '1234']);
    expect(newlyRevokedSerials(null, a)).toEqual(['1', 'a', 'ff', '1234']);
    expect(newlyRevokedSerials(a, crl([]))).toEqual([]);
  });

  it('falls back to a set for CRLs whose entries are not in serial order', () => {
    // Swap two entries of a sorted CRL's DER by re-encoding them in the other order.
    const sorted = crl(['02', '03']);
    const e2 = encodeRevokedEntries([{ serialHex: '02', revokedAt: now, reasonCode: 4 }]);
    const e3 = encodeRevokedEntries([{ serialHex: '03', revokedAt: now, reasonCode: 4 }]);
    const both = Buffer.concat([e2, e3]);
    const swapped = Buffer.from(sorted);
    swapped.set(Buffer.concat([e3, e2]), sorted.indexOf(both));
    expect(newlyRevokedSerials(crl(['03']), swapped)).toEqual(['2']);
    expect(newlyRevokedSerials(swapped, crl(['01', '02', '03']))).toEqual(['1']);
  });
});

describe('createRevokedSessions', () => {
  it('kicks each CN once, retries failures with backoff, and gives up after maxAttempts', async () => {
    // Fake timers: the retries run when the clock is advanced, not after a sleep that may be too short under load.
    vi.useFakeTimers();
    onTestFinished(() => void vi.useRealTimers());
    const calls: string[] = [];
    let failing = new Set(['t1/flaky', 't1/broken']);
    const sessions = createRevokedSessions({
      kicker: {
        async kick(cn) {
          calls.push(cn);
          if (failing.has(cn)) throw new Error('admin listener down');
          return { commonName: cn, method: 'create-delete' };
        },
      },
      retryMs: 20,
      maxRetryMs: 40,
      maxAttempts: 3,
    });
    const first = await sessions.kick(['t1/a', 't1/a', 't1/flaky', 't1/broken']);
    expect(first.kicked).toEqual(['t1/a']);
    expect(first.failed.map((f) => f.commonName).sort()).toEqual(['t1/broken', 't1/flaky']);
    failing = new Set(['t1/broken']);
    expect(sessions.pending().sort()).toEqual(['t1/broken', 't1/flaky']);
    await vi.advanceTimersByTimeAsync(20); // first retry: flaky succeeds, broken fails a second time
    await sessions.idle();
    expect(sessions.pending()).toEqual(['t1/broken']);
    await vi.advanceTimersByTimeAsync(40); // second retry (backoff doubled): broken's third attempt, abandoned
    await sessions.idle();
    expect(calls.filter((c) => c === 't1/flaky')).toHaveLength(2);
    expect(calls.filter((c) => c === 't1/broken')).toHaveLength(3);
    expect(calls.filter((c) => c === 't1/a')).toHaveLength(1);
    expect(sessions.pending()).toEqual([]);
    await sessions.close();
  });
});
