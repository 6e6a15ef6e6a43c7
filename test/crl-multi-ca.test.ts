/**
 * Several CAs published at once (issue 19 item 2), on PGlite and Postgres, checked with OpenSSL:
 * one CRL per CA (own crl_state row, own number series, own distribution point whose CRL carries
 * it as Issuing Distribution Point), the broker's crlfile holding every trusted CA's CRL and its
 * cafile every trusted CA — never a CA in the cafile whose CRL the crlfile lacks (checked at every
 * broker reload) — a revocation under one CA rebuilding that CA's CRL only, and a revoked CA
 * leaving the cafile, then the crlfile, its last CRL still served at its URL.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPublicKey } from 'node:crypto';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrokerReloader } from '../src/broker/broker-reloader.ts';
import { createCrlPublication, type CrlPublication } from '../src/composition/crl.ts';
import { caDistributionPointUrl } from '../src/crl/ca-set.ts';
import { crlDerToPem } from '../src/crl/verify-crl.ts';
import { caRecordFor, createStaticCaDirectory, type StaticCaDirectory } from '../src/pki/ca-directory.ts';
import { createCertificateAuthority } from '../src/pki/certificate-authority.ts';
import { createDeviceCa, deviceCaFromPem, type DeviceCa } from '../src/pki/device-ca.ts';
import { generateDeviceKey } from '../src/pki/keys.ts';
import { pemBlocks } from '../src/pki/pem.ts';
import { installErrorHandler } from '../src/support/problem.ts';
import { silentLogger } from '../src/support/logger.ts';
import { createTestDatabase, DRIVERS, type TestDatabase } from './support/databases.ts';
import { run } from './support/openssl.ts';
import { x509 } from '../src/pki/x509.ts';
import { createBrokerFleet } from '../src/app/broker-nodes.ts';
import { createStorage } from '../src/storage/repositories.ts';

const BASE = 'https://certfleet.example';

export async function loadedCa(commonName: string): Promise<DeviceCa> {
  const pem = await createDeviceCa({ now: new Date(), commonName });
  return deviceCaFromPem(pem.certPem, pem.keyPem);
}

describe.each(DRIVERS)('several CAs published (%s)', (kind) => {
  let database: TestDatabase;
  let tmp: string;
  let ca1: DeviceCa;
  let ca2: DeviceCa;
  let dir: StaticCaDirectory;
  let crl: CrlPublication;
  let app: FastifyInstance;
  const crlPath = () => join(tmp, 'crl', 'device-crl.pem');
  const caPath = () => join(tmp, 'broker', 'device-ca.crt');
  /** Every broker reload: which CAs the cafile holds, and whether each has its CRL in the crlfile. */
  const reloads: Array<{ cafile: string[]; crlfile: string[] }> = [];
  const violations: string[] = [];

  const keyIdOf = (ca: DeviceCa) => ca.subjectKeyId.toString('hex');
  const issuerOfCrl = (der: Buffer) => {
    const issuer = new x509.X509Crl(new Uint8Array(der)).issuer;
    for (const ca of [ca1, ca2]) if (issuer.includes(ca.issuerLabel)) return keyIdOf(ca);
    return '?';
  };
  const snapshot = () => {
    let cafile: string[] = [];
    let crlfile: string[] = [];
    try {
      cafile = pemBlocks(readFileSync(caPath(), 'utf8'), 'CERTIFICATE').map((der) => [ca1, ca2].find((c) => c.certDer.equals(der)) ?? null).map((c) => (c ? keyIdOf(c) : '?'));
    } catch {
      cafile = [];
    }
    try {
      crlfile = pemBlocks(readFileSync(crlPath(), 'latin1'), 'X509 CRL').map(issuerOfCrl);
    } catch {
      crlfile = [];
    }
    return { cafile, crlfile };
  };
  const reloader: BrokerReloader = {
    configured: true,
    description: 'invariant check',
    async reload() {
      const s = snapshot();
      reloads.push(s);
      for (const id of s.cafile) if (!s.crlfile.includes(id)) violations.push(`CA ${id} in cafile without its CRL (${JSON.stringify(s)})`);
    },
  };

  async function issue(ca: DeviceCa, id: string, tenant: string, deviceId: string) {
    const authority = createCertificateAuthority(ca, { crlUrl: caDistributionPointUrl({ publicBaseUrl: BASE }, { id, issuerKeyId: keyIdOf(ca) }, keyIdOf(ca1)) });
    const key = await generateDeviceKey('ec-p256');
    const now = new Date();
    const issued = await authority.issue({
      commonName: `${tenant}/${deviceId}`,
      publicKey: { spkiDer: createPublicKey(key.privateKeyPem).export({ type: 'spki', format: 'der' }), keyType: 'ec-p256' },
      notBefore: new Date(now.getTime() - 60_000),
      notAfter: new Date(now.getTime() + 30 * 86_400_000),
    } as never);
    await database.driver.transaction(async (tx) => {
      await tx.query('INSERT INTO device_registry (tenant_id, device_id, created_at, updated_at) VALUES ($1, $2, $3, $3) ON CONFLICT DO NOTHING', [tenant, deviceId, now]);
      await tx.query(
        `INSERT INTO device_certificates (tenant_id, device_id, cert_pem, fingerprint_sha256, common_name, issuer, serial_number, key_type, status, not_before, not_after, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'ec-p256', 'ACTIVE', $8, $9, $10, $10)`,
        [tenant, deviceId, issued.certPem, issued.fingerprint, `${tenant}/${deviceId}`, issued.issuer, issued.serialHex, issued.notBefore, issued.notAfter, now],
      );
    });
    const file = join(tmp, `${deviceId}.crt`);
    writeFileSync(file, issued.certPem);
    return { file, serial: issued.serialHex, pem: issued.certPem };
  }

  async function revoke(serial: string) {
    await database.driver.transaction(async (tx) => {
      const { rows } = await tx.query<{ issuer: string }>(
        `UPDATE device_certificates SET status = 'REVOKED', revoked_at = now(), revoked_reason = 'keyCompromise' WHERE serial_number = $1 RETURNING issuer`,
        [serial],
      );
      await tx.query('INSERT INTO crl_pending_revocations (issuer) VALUES ($1)', [rows[0]!.issuer]);
    });
    crl.listener.revocationCommitted();
    await crl.publisher!.idle();
  }

  const bothCas = () => join(tmp, 'both-cas.pem');
  const verify = (cert: string, crlFile: string, cafile = bothCas()) => run('openssl', ['verify', '-crl_check', '-CAfile', cafile, '-CRLfile', crlFile, cert]).out.trim();
  const numbers = async () =>
    Object.fromEntries(
      await Promise.all(
        [ca1, ca2].map(async (ca) => [keyIdOf(ca), (await database.driver.transaction((tx) => tx.query<{ crl_number: string }>('SELECT crl_number::text AS crl_number FROM crl_state WHERE issuer_key_id = $1 AND der IS NOT NULL', [keyIdOf(ca)]))).rows[0]?.crl_number ?? null]),
      ),
    );

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    tmp = mkdtempSync(join(tmpdir(), 'certfleet-multi-ca-'));
    ca1 = await loadedCa(`Multi ${kind} CA one`);
    ca2 = await loadedCa(`Multi ${kind} CA two`);
    writeFileSync(bothCas(), ca1.certPem + ca2.certPem);
    writeFileSync(join(tmp, 'ca1.pem'), ca1.certPem);
    dir = createStaticCaDirectory([
      { record: caRecordFor(ca1, { id: 'ca_one', status: 'active', crlDistributionPoint: `${BASE}/pki/crl` }), ca: ca1 },
      { record: caRecordFor(ca2, { id: 'ca_two', status: 'staged', crlDistributionPoint: `${BASE}/pki/ca/ca_two/crl` }), ca: ca2 },
    ]);
    crl = createCrlPublication({
      config: { crlOutputPath: crlPath(), crlRefreshMinutes: 60, crlValidityHours: 168, brokerPidFile: null, brokerReloadCommand: null, publicBaseUrl: BASE, brokerCaPath: caPath() },
      storage: database,
      ca: null,
      cas: dir,
      legacyIssuerKeyId: keyIdOf(ca1),
      logger: silentLogger,
      reloader,
      refreshTimer: false,
    });
    await crl.start();
    await crl.settled();
    app = Fastify();
    installErrorHandler(app);
    await app.register(crl.routes.pki);
  }, 120_000);

  afterAll(async () => {
    await crl?.stop();
    await app?.close();
    await database?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('publishes one CRL per CA, each in the crlfile and each CA in the cafile; OpenSSL accepts certificates of both', async () => {
    const n = await numbers();
    expect(n[keyIdOf(ca1)]).not.toBeNull();
    expect(n[keyIdOf(ca2)]).not.toBeNull();
    expect(snapshot()).toEqual({ cafile: [keyIdOf(ca1), keyIdOf(ca2)], crlfile: [keyIdOf(ca1), keyIdOf(ca2)] });
    expect(crl.issuerKeyIds().sort()).toEqual([keyIdOf(ca1), keyIdOf(ca2)].sort());
    const a = await issue(ca1, 'ca_one', 'acme', 'dev-a');
    const b = await issue(ca2, 'ca_two', 'acme', 'dev-b');
    expect(run('openssl', ['x509', '-in', a.file, '-noout', '-ext', 'crlDistributionPoints']).out).toContain(`URI:${BASE}/pki/crl`);
    expect(run('openssl', ['x509', '-in', b.file, '-noout', '-ext', 'crlDistributionPoints']).out).toContain(`URI:${BASE}/pki/ca/ca_two/crl`);
    expect(verify(a.file, crlPath())).toBe(`${a.file}: OK`);
    expect(verify(b.file, crlPath())).toBe(`${b.file}: OK`);
    expect(violations).toEqual([]);
  });

  it('serves each CA and its CRL (IDP = the CDP its certificates carry), /pki/cas.pem with both, /pki/crl and /pki/ca.pem the default CA', async () => {
    const cas = await app.inject({ url: '/pki/cas.pem' });
    expect(cas.statusCode).toBe(200);
    expect(pemBlocks(cas.body, 'CERTIFICATE').map((d) => d.toString('hex'))).toEqual([ca1.certDer.toString('hex'), ca2.certDer.toString('hex')]);
    expect((await app.inject({ url: '/pki/ca/ca_two.pem' })).body).toBe(ca2.certPem);
    expect((await app.inject({ url: '/pki/ca.pem' })).body).toBe(ca1.certPem);
    const unknown = await app.inject({ url: '/pki/ca/ca_nope/crl' });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.headers['content-type']).toContain('application/problem+json');
    expect((await app.inject({ url: '/pki/ca/..%2F..%2Fetc.pem' })).statusCode).toBe(404);

    for (const [id, ca, url, device] of [
      ['ca_two', ca2, `${BASE}/pki/ca/ca_two/crl`, 'dev-b'],
      ['ca_one', ca1, `${BASE}/pki/crl`, 'dev-a'],
    ] as const) {
      const res = await app.inject({ url: `/pki/ca/${id}/crl` });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toBe('application/pkix-crl');
      const pemFile = join(tmp, `${id}-served.pem`);
      writeFileSync(pemFile, crlDerToPem(res.rawPayload));
      const text = run('openssl', ['crl', '-in', pemFile, '-noout', '-text']).out;
      expect(text).toContain(ca.issuerLabel);
      expect(text).toMatch(new RegExp(`Issuing Distribution Point: critical\\s+Full Name:\\s+URI:${url.replace(/[.]/g, '\\.')}`));
      // OpenSSL checks the served CRL's scope (IDP) against the certificate's CDP: no "different CRL scope".
      expect(verify(join(tmp, `${device}.crt`), pemFile)).toBe(`${join(tmp, `${device}.crt`)}: OK`);
    }
    const def = await app.inject({ url: '/pki/crl' });
    expect(def.rawPayload.equals((await app.inject({ url: '/pki/ca/ca_one/crl' })).rawPayload)).toBe(true);
  });

  it('a revocation under CA one rebuilds CA one’s CRL only; OpenSSL refuses that certificate and still accepts CA two’s', async () => {
    const before = await numbers();
    const r = await issue(ca1, 'ca_one', 'acme', 'dev-r');
    await revoke(r.serial);
    const after = await numbers();
    expect(BigInt(after[keyIdOf(ca1)]!)).toBeGreaterThan(BigInt(before[keyIdOf(ca1)]!));
    expect(after[keyIdOf(ca2)]).toBe(before[keyIdOf(ca2)]);
    expect(verify(r.file, crlPath())).toMatch(/certificate revoked/);
    expect(verify(join(tmp, 'dev-b.crt'), crlPath())).toMatch(/: OK$/);

    const s = await issue(ca2, 'ca_two', 'acme', 'dev-s');
    await revoke(s.serial);
    const third = await numbers();
    expect(third[keyIdOf(ca1)]).toBe(after[keyIdOf(ca1)]);
    expect(BigInt(third[keyIdOf(ca2)]!)).toBeGreaterThan(BigInt(after[keyIdOf(ca2)]!));
    expect(verify(s.file, crlPath())).toMatch(/certificate revoked/);
    expect(verify(join(tmp, 'dev-a.crt'), crlPath())).toMatch(/: OK$/);
    // The bundle for broker agents: both CRLs, file variant.
    const bundle = await crl.bundle!.latest();
    expect(bundle!.crls.map((c) => c.issuerKeyId)).toEqual([keyIdOf(ca1), keyIdOf(ca2)]);
    expect(violations).toEqual([]);
  });

  it('a broker node is behind until it has every CA’s latest CRL (per-CA numbers in its report)', async () => {
    const fleet = createBrokerFleet({ storage: createStorage(database.db), clock: { now: () => new Date(Date.now() + 60_000) }, settings: { lagAlertMs: 1000, reportTimeoutMs: 3_600_000, issuerKeyIds: () => crl.issuerKeyIds() } });
    const n = await numbers();
    const lowest = [n[keyIdOf(ca1)]!, n[keyIdOf(ca2)]!].map(BigInt).reduce((a, b) => (a < b ? a : b));
    // It has CA one's latest CRL only, and reports as its lowest number one above CA two's latest: the old comparison would call it current.
    const onlyOne = await fleet.report('edge-1', { kind: 'mosquitto', crl_number: (lowest + 1n).toString(), crl_numbers: { [keyIdOf(ca1)]: n[keyIdOf(ca1)]! }, applied_at: new Date().toISOString() });
    expect(onlyOne.state).toBe('lagging');
    expect(onlyOne.lag_seconds).toBeGreaterThan(0);
    const both = await fleet.report('edge-1', { kind: 'mosquitto', crl_number: lowest.toString(), crl_numbers: { [keyIdOf(ca1)]: n[keyIdOf(ca1)]!, [keyIdOf(ca2)]: n[keyIdOf(ca2)]! }, applied_at: new Date().toISOString() });
    expect(both).toMatchObject({ state: 'ok', lag_seconds: 0, crl_numbers: { [keyIdOf(ca1)]: n[keyIdOf(ca1)], [keyIdOf(ca2)]: n[keyIdOf(ca2)] } });
    const listed = await fleet.list();
    expect(listed.nodes.find((x) => x.node === 'edge-1')?.crl_numbers).toEqual({ [keyIdOf(ca1)]: n[keyIdOf(ca1)], [keyIdOf(ca2)]: n[keyIdOf(ca2)] });
  });

  it('a revoked CA leaves the cafile first, then the crlfile; its last CRL stays served; cas.pem drops it', async () => {
    reloads.length = 0;
    dir.setStatus('ca_two', 'revoked');
    await crl.settled();
    expect(snapshot()).toEqual({ cafile: [keyIdOf(ca1)], crlfile: [keyIdOf(ca1)] });
    // The cafile changed before the crlfile did.
    expect(reloads[0]).toEqual({ cafile: [keyIdOf(ca1)], crlfile: [keyIdOf(ca1), keyIdOf(ca2)] });
    expect(violations).toEqual([]);
    expect(crl.issuerKeyIds()).toEqual([keyIdOf(ca1)]);
    expect(pemBlocks((await app.inject({ url: '/pki/cas.pem' })).body, 'CERTIFICATE')).toHaveLength(1);
    expect((await app.inject({ url: '/pki/ca/ca_two/crl' })).statusCode).toBe(200);
    expect((await crl.bundle!.latest())!.crls.map((c) => c.issuerKeyId)).toEqual([keyIdOf(ca1)]);
    // A revocation now publishes only CA one (CA two has no publisher left).
    const r = await issue(ca1, 'ca_one', 'acme', 'dev-after');
    await revoke(r.serial);
    expect(verify(r.file, crlPath(), join(tmp, 'ca1.pem'))).toMatch(/certificate revoked/);
    expect(verify(join(tmp, 'dev-a.crt'), crlPath(), join(tmp, 'ca1.pem'))).toMatch(/: OK$/);
    expect(violations).toEqual([]);
  });
});
