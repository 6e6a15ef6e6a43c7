/**
 * CA records with keys in a PKCS#11 token (SoftHSM2): `ca create --key-uri` generates the key in
 * the token and the CA then signs through it; a URI that does not resolve, or a wrong PIN, is a
 * clear 422 and nothing is stored (issue 19 item 7).
 */
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDeviceCa } from '../src/pki/device-ca.ts';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';
import { SOFTHSM_MODULE, softHsm, softHsmMissing, type SoftHsm } from './support/softhsm.ts';

const PIN = '246802';
const skipped = softHsmMissing ? ` (skipped: ${softHsmMissing})` : '';

describe.runIf(!softHsmMissing)(`CA records with keys in SoftHSM2${skipped}`, () => {
  let hsm: SoftHsm;
  let database: TestDatabase;
  let t: TestService;
  const op = (tt: TestService, method: string, url: string, body?: unknown) => tt.call(null, method, `/api/v1/operator${url}`, body, 'operator');

  beforeAll(async () => {
    hsm = softHsm();
    hsm.initToken('ca-records', PIN);
    hsm.initToken('ca-records-pin', PIN);
    database = await createTestDatabase('pglite');
    t = await startTestService(database, { env: { PKCS11_MODULE_PATH: SOFTHSM_MODULE, PKCS11_PIN_FILE: hsm.pinFile(PIN) } });
    expect((await t.call('acme', 'POST', '/api/v1/customer/devices', { device_id: 'D1' })).status).toBe(201);
  });
  afterAll(async () => {
    await t?.close();
    await database?.close();
  });

  it('generates the CA key in the token, activates it, and issues through the token', async () => {
    const created = await op(t, 'POST', '/cas', { key_uri: 'pkcs11:token=ca-records;object=next-ca' });
    expect(created.status, created.body).toBe(201);
    expect(created.json.key).toMatchObject({ kind: 'pkcs11' });
    expect(created.json.key.ref).toMatch(/^pkcs11:token=ca-records;object=next-ca/);
    expect((await op(t, 'POST', `/cas/${created.json.id}/activate`)).status).toBe(200);
    const pem = (await op(t, 'GET', `/cas/${created.json.id}`)).json.cert_pem;
    const issued = await t.call('acme', 'POST', '/api/v1/customer/devices/D1/certificates/generate', { key_type: 'ec-p256' });
    expect(issued.status, issued.body).toBe(201);
    expect(new X509Certificate(issued.json.cert_pem).verify(new X509Certificate(pem).publicKey)).toBe(true);
    expect(t.service.cas.byId(created.json.id)?.ca.signer.kind).toBe('pkcs11');
    // The same label again: refused by the token side, nothing replaced.
    const again = await op(t, 'POST', '/cas', { key_uri: 'pkcs11:token=ca-records;object=next-ca' });
    expect([again.status, again.json.code]).toEqual([422, 'CA_KEY_UNAVAILABLE']);
  });

  it('a URI that does not resolve: 422, nothing stored', async () => {
    const n = (await op(t, 'GET', '/cas')).json.cas.length;
    const byo = await createDeviceCa({ now: new Date(), commonName: 'BYO token CA' });
    for (const [url, body] of [
      ['/cas', { key_uri: 'pkcs11:token=no-such-token;object=x' }],
      ['/cas/import', { cert_pem: byo.certPem, key_uri: 'pkcs11:token=ca-records;object=not-there' }],
    ] as const) {
      const res = await op(t, 'POST', url, body);
      expect([res.status, res.json.code], res.body).toEqual([422, 'CA_KEY_UNAVAILABLE']);
      expect(res.json.detail).toMatch(/no PKCS#11 token|no (private )?key|not found|does not|cannot/i);
    }
    expect((await op(t, 'GET', '/cas')).json.cas.length).toBe(n);
  });

  it('a wrong PIN: 422 naming the PIN file, never the PIN, nothing stored', async () => {
    const other = await createTestDatabase('pglite');
    const wrong = await startTestService(other, { env: { PKCS11_MODULE_PATH: SOFTHSM_MODULE, PKCS11_PIN_FILE: hsm.pinFile('999999') } });
    try {
      const res = await op(wrong, 'POST', '/cas', { key_uri: 'pkcs11:token=ca-records-pin;object=x' });
      expect([res.status, res.json.code], res.body).toEqual([422, 'CA_KEY_UNAVAILABLE']);
      expect(res.json.detail).toMatch(/wrong PIN/);
      expect(res.body).not.toContain('999999');
      expect((await op(wrong, 'GET', '/cas')).json.cas).toHaveLength(1); // the configured CA only
    } finally {
      await wrong.close();
      await other.close();
    }
  });
});
