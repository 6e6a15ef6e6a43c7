/**
 * Issue 10.6: issuance is rate limited per tenant (429 + Retry-After), and RSA key
 * generation runs in a bounded pool apart from signing, so one tenant's RSA flood does not
 * hold up another tenant's EC issuance or a revocation reaching the CRL file.
 * Loose on purpose (no wall-time thresholds): the other tenant must be done while the
 * flood is still largely in progress. bench/tenant-fairness.bench.ts measures the figures.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService } from './support/service.ts';
import { scaled } from './support/timeouts.ts';

const pemToDer = (pem: string) => Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');

describe('fairness between tenants', () => {
  let database: TestDatabase;

  beforeAll(async () => {
    database = await createTestDatabase('pglite');
  });
  afterAll(async () => database?.close());

  it('issuance is rate limited per tenant: 429 problem+json with Retry-After; other tenants unaffected', async () => {
    await database.reset();
    const t = await startTestService(database, { env: { ISSUANCE_RATE_PER_MINUTE: '6', ISSUANCE_BURST: '3' } });
    try {
      for (const tenant of ['acme', 'globex']) expect((await t.call(tenant, 'POST', '/customer/devices', { device_id: 'D1' })).status).toBe(201);
      const issue = (tenant: string) => t.call(tenant, 'POST', '/customer/devices/D1/certificates/generate', { key_type: 'ec-p256' });
      for (let i = 0; i < 3; i++) expect((await issue('acme')).status).toBe(201);
      const limited = await issue('acme');
      expect(limited.status).toBe(429);
      expect(limited.headers['content-type']).toContain('application/problem+json');
      expect(limited.json.code).toBe('RATE_LIMITED');
      expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(limited.json.details.retry_after_seconds).toBe(Number(limited.headers['retry-after']));
      const rotate = await t.call('acme', 'POST', '/customer/devices/D1/certificates/rotate', { key_type: 'ec-p256' });
      expect(rotate.status).toBe(429);
      expect((await issue('globex')).status).toBe(201);
      expect((await t.call('acme', 'GET', '/customer/certificates')).json.total).toBe(3);
    } finally {
      await t.close();
    }
  });

  it("while one tenant floods RSA-2048 generation (32 at once), another tenant's EC issuance and a revocation reaching the CRL file complete", async () => {
    await database.reset();
    const t = await startTestService(database, { env: { ISSUANCE_RATE_PER_MINUTE: '0' } });
    try {
      for (const tenant of ['flood', 'calm']) expect((await t.call(tenant, 'POST', '/customer/devices', { device_id: 'D1' })).status).toBe(201);
      await t.service.crl.publisher!.idle();
      await t.token('flood');
      await t.token('calm');

      const FLOOD = 32;
      let floodDone = 0;
      const flood = Array.from({ length: FLOOD }, () =>
        t.call('flood', 'POST', '/customer/devices/D1/certificates/generate', { key_type: 'rsa-2048' }).then((res) => {
          floodDone++;
          return res.status;
        }),
      );

      const calm: number[] = [];
      for (let i = 0; i < 5; i++) {
        const res = await t.call('calm', 'POST', '/customer/devices/D1/certificates/generate', { key_type: 'ec-p256' });
        expect(res.status).toBe(201);
        calm.push(res.json.certificate.id);
      }
      const revoked = await t.call('calm', 'POST', `/customer/certificates/${calm[0]}/revoke`, { reason: 'keyCompromise' });
      expect(revoked.status).toBe(200);
      await t.service.crl.publisher!.idle();
      const serial = Buffer.from(revoked.json.certificate.serial_number.padStart(40, '0'), 'hex');
      const inFile = pemToDer(readFileSync(t.config.crlOutputPath, 'utf8')).includes(serial);
      const floodDoneWhenCalmFinished = floodDone;

      expect(inFile).toBe(true);
      // Unbounded (keys in libuv's thread pool) the calm tenant finished only after ~all of the flood.
      expect(floodDoneWhenCalmFinished, `${floodDoneWhenCalmFinished} of ${FLOOD} flood requests were done when the calm tenant finished`).toBeLessThanOrEqual(FLOOD - 8);
      expect(await Promise.all(flood)).toEqual(Array(FLOOD).fill(201));
    } finally {
      await t.close();
    }
  }, scaled(180_000));
});
