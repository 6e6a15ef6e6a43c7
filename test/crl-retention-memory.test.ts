/**
 * CRL entry retention (RFC 5280 3.3) as a use case on the in-memory storage
 * (test/support/memory-storage.ts), in milliseconds: a revoked certificate stays on the CRL past
 * its notAfter until it has been on one CRL whose thisUpdate is after that notAfter, then leaves;
 * one revoked later stays; the full read (the storage's scope) and the incremental merge (entries
 * kept in memory, src/crl/incremental-entries.ts) drop it at the same publication. Every CRL is
 * read back by @peculiar/x509, not by our DER code. The real-database tests of the same behaviour:
 * crl-publish.test.ts and crl-incremental.test.ts (both drivers).
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { beforeAll, describe, expect, it } from 'vitest';
import { createUseCases } from '../src/app/use-cases.ts';
import type { CertificateAuthority } from '../src/app/ports.ts';
import { createPublishCrl, crlAuthorityFor, type CrlAuthority, type PublishCrlRequest } from '../src/crl/publish-crl.ts';
import { createManualClock, DAY_MS, HOUR_MS } from '../src/domain/clock.ts';
import { createRateLimiter } from '../src/domain/rate-limit.ts';
import { createCertificateAuthority } from '../src/pki/certificate-authority.ts';
import { createDeviceCa, deviceCaFromPem } from '../src/pki/device-ca.ts';
import { createKeySource } from '../src/pki/key-source.ts';
import { createMemoryStorage } from './support/memory-storage.ts';

const START = '2026-03-01T00:00:00Z';
const acme = { id: 'test:acme', tenantId: 'acme' };

describe('CRL entry retention on the in-memory storage', () => {
  let authority: CertificateAuthority;
  let crlAuthority: CrlAuthority;
  let caCertificate: x509.X509Certificate;

  beforeAll(async () => {
    const ca = await createDeviceCa({ keyType: 'ec-p256', now: new Date('2026-01-01T00:00:00Z') });
    const loaded = await deviceCaFromPem(ca.certPem, ca.keyPem);
    authority = createCertificateAuthority(loaded, { crlUrl: 'http://certfleet.test/pki/crl' });
    crlAuthority = crlAuthorityFor(loaded);
    caCertificate = new x509.X509Certificate(ca.certPem);
  });

  function setUp(request: PublishCrlRequest) {
    const storage = createMemoryStorage();
    const clock = createManualClock(START);
    const useCases = createUseCases({
      storage,
      clock,
      authority,
      keys: createKeySource(null),
      revocations: { revocationCommitted: () => {} },
      issuanceLimit: createRateLimiter({ perMinute: 10_000, burst: 10_000, now: () => clock.now().getTime(), what: 'issuance' }),
      secrets: { seal: (plain) => plain },
      settings: { rotationGraceHours: 24, webhookAllowPrivateNetworks: false },
    });
    const publishCrl = createPublishCrl({
      storage,
      clock,
      authority: crlAuthority,
      settings: { validityHours: 24, distributionPointUrl: 'http://certfleet.test/pki/crl', fullRebuildMs: 365 * DAY_MS },
    });
    /** Publishes, and returns the serials the CRL lists (as @peculiar/x509 reads them) with how it was built. */
    const publish = async () => {
      const result = await publishCrl(request);
      if (!result.published) throw new Error('nothing published');
      const crl = new x509.X509Crl(new Uint8Array(result.crl.der));
      expect(await crl.verify({ publicKey: caCertificate })).toBe(true);
      return { serials: crl.entries.map((e) => e.serialNumber.toLowerCase()).sort(), build: result.crl.build, thisUpdate: result.crl.thisUpdate };
    };
    const revokedCertificate = async (deviceId: string, validityDays: number, reason: string) => {
      await useCases.registerDevice(acme, { device_id: deviceId });
      const { certificate } = await useCases.issueCertificate(acme, deviceId, { validityDays, key: { kind: 'generate', keyType: 'ec-p256' } });
      await useCases.revokeCertificate(acme, certificate.id, reason);
      return { serial: certificate.serial_number.toLowerCase(), notAfter: Date.parse(certificate.not_after) };
    };
    return { storage, clock, publish, revokedCertificate };
  }

  for (const request of [{}, { incremental: true }] satisfies PublishCrlRequest[]) {
    const mode = request.incremental ? 'incremental (entries kept in memory, merged)' : 'full read';
    it(`an expired revoked certificate stays on one CRL after its notAfter, then leaves; ${mode}`, async () => {
      const { storage, clock, publish, revokedCertificate } = setUp(request);
      const short = await revokedCertificate('DEV-SHORT', 10, 'keyCompromise');
      const first = await publish();
      expect(first.serials).toEqual([short.serial]);
      expect(first.build.mode).toBe('full');
      expect(storage.snapshot().pendingRevocations).toEqual([]); // the build took the mark

      clock.advance(5 * DAY_MS);
      const long = await revokedCertificate('DEV-LONG', 90, 'unspecified');
      const second = await publish();
      expect(second.serials).toEqual([short.serial, long.serial].sort());
      if (request.incremental) expect(second.build).toMatchObject({ mode: 'incremental', read: 1, inserted: 1, dropped: 0 });

      // Past the short certificate's notAfter: the previous CRL (thisUpdate before that notAfter) did
      // not yet show it expired, so this one still lists it, with thisUpdate after the notAfter.
      clock.set(new Date(short.notAfter + HOUR_MS));
      const third = await publish();
      expect(third.thisUpdate.getTime()).toBeGreaterThan(short.notAfter);
      expect(third.serials).toEqual([short.serial, long.serial].sort());
      if (request.incremental) expect(third.build).toMatchObject({ mode: 'incremental', read: 0, dropped: 0 });

      // The previous CRL's thisUpdate is after its notAfter: retention ended, it leaves; the other stays.
      clock.advance(HOUR_MS);
      const fourth = await publish();
      expect(fourth.serials).toEqual([long.serial]);
      if (request.incremental) expect(fourth.build).toMatchObject({ mode: 'incremental', dropped: 1 });

      // And it never comes back; a certificate revoked now is listed.
      clock.advance(DAY_MS);
      const late = await revokedCertificate('DEV-LATE', 30, 'superseded');
      const fifth = await publish();
      expect(fifth.serials).toEqual([long.serial, late.serial].sort());
    });
  }

  it('an incremental build agrees byte for byte with a full read at the self-check, retention included', async () => {
    const { clock, publish, revokedCertificate } = setUp({ incremental: true });
    const short = await revokedCertificate('DEV-A', 3, 'keyCompromise');
    await revokedCertificate('DEV-B', 60, 'unspecified');
    await publish();
    clock.set(new Date(short.notAfter + 1_000));
    await publish();
    clock.advance(HOUR_MS);
    expect((await publish()).build).toMatchObject({ mode: 'incremental', dropped: 1 });
    // The memory storage's full read and the merge must give the same entries: force the self-check.
    clock.advance(366 * DAY_MS);
    const checked = await publish();
    expect(checked.build).toMatchObject({ mode: 'checked', mismatch: false });
  });
});
