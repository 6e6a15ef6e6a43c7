/**
 * The broker's trust files with a tenant-scoped CA, as certfleet's CRL publication keeps them
 * (createCrlPublication on Postgres, a static CA set: a global CA and tenant TA's own CA):
 *
 * - plugin mode (BROKER_GRANTS_PATH set: the certfleet_acl plugin binds a CN to its CA's scope):
 *   both CAs enter the cafile, and at EVERY broker reload the scope map beside it lists every CA
 *   the cafile holds, with its scope (the map is written first: it never lags the cafile);
 * - acl_file mode (BROKER_ACL_PATH, no grants file) and RabbitMQ: nothing at the broker can tell
 *   which CA signed a certificate, so the tenant CA stays out of the cafile (its devices are
 *   refused there instead of being able to sign for any tenant), and no map is written.
 */
import 'reflect-metadata';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCaScopes } from '../src/broker/ca-scopes.ts';
import { createCrlPublication, type CrlPublication } from '../src/composition/crl.ts';
import { caRecordFor, createStaticCaDirectory } from '../src/pki/ca-directory.ts';
import { deviceCaFromPem, type DeviceCa } from '../src/pki/device-ca.ts';
import { silentLogger } from '../src/support/logger.ts';
import { brokerTestFixture, closeBrokerTest } from './support/broker-fixture.ts';
import type { TestDatabase } from './support/databases.ts';
import { loadedCa } from './support/multi-ca.ts';

const subjects = (pem: string) => (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((p) => new x509.X509Certificate(p).subject);

let tmp: string;
let database: TestDatabase;
let globalCa: DeviceCa;
let tenantCa: DeviceCa;
const publications: CrlPublication[] = [];

beforeAll(async () => {
  let env: Record<string, string>;
  ({ tmp, database, env } = await brokerTestFixture('ca-scope-files'));
  globalCa = await deviceCaFromPem(readFileSync(env.DEVICE_CA_CERT_PATH, 'utf8'), readFileSync(env.DEVICE_CA_KEY_PATH, 'utf8'));
  tenantCa = await loadedCa('Tenant TA own CA (trust files)');
}, 120_000);

afterAll(async () => {
  for (const p of publications) await p.stop().catch(() => undefined);
  await closeBrokerTest({ database, tmp });
}, 60_000);

/** One publication into its own folder; every reload records what the broker would read then. */
async function publish(name: string, mode: { brokerGrantsPath?: string; brokerAclPath?: string; brokerRabbitmq?: boolean }) {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  const cafile = join(dir, 'device-ca.crt');
  const seen: Array<{ cafile: string[]; scopes: Array<[string, string | null]> | null }> = [];
  const dirCas = createStaticCaDirectory([
    { record: caRecordFor(globalCa, { id: 'ca_global', status: 'active' }), ca: globalCa },
    { record: caRecordFor(tenantCa, { id: 'ca_ta', status: 'active', tenantId: 'TA' }), ca: tenantCa },
  ]);
  const crl = createCrlPublication({
    config: {
      crlOutputPath: join(dir, 'crl.pem'),
      brokerCaPath: cafile,
      brokerPidFile: null,
      brokerReloadCommand: null,
      crlRefreshMinutes: 60,
      crlValidityHours: 168,
      publicBaseUrl: 'https://certfleet.example',
      brokerGrantsPath: mode.brokerGrantsPath ?? null,
      brokerRabbitmq: mode.brokerRabbitmq ? { url: 'http://127.0.0.1:15672', username: 'u', passwordFile: '/dev/null', vhost: '/' } : null,
    },
    storage: database,
    ca: null,
    cas: dirCas,
    logger: silentLogger,
    refreshTimer: false,
    reloader: {
      configured: true,
      description: 'records the broker files at each reload',
      reload: async () => {
        const scopesPath = `${cafile}.scopes`;
        seen.push({
          cafile: existsSync(cafile) ? subjects(readFileSync(cafile, 'utf8')) : [],
          scopes: existsSync(scopesPath) ? parseCaScopes(readFileSync(scopesPath, 'utf8')).map((e) => [new x509.X509Certificate(e.certPem).subject, e.tenantId]) : null,
        });
      },
    },
  });
  publications.push(crl);
  await crl.start();
  await crl.settled();
  // Readiness: both CAs' CRLs assembled into the crlfile (a CA is admitted to the cafile after its CRL), then the queue idle.
  const until = Date.now() + 60_000;
  while ((readFileSync(join(dir, 'crl.pem'), 'utf8').match(/BEGIN X509 CRL/g) ?? []).length < 2) {
    if (Date.now() > until) throw new Error(`${name}: the crlfile never held both CRLs`);
    await new Promise((r) => setTimeout(r, 20));
  }
  await crl.trustFiles!.idle();
  await crl.stop();
  return { cafile, seen };
}

describe('tenant CAs in the broker trust files', () => {
  it('plugin mode: both CAs in the cafile, and at every reload the scope map covers every CA of the cafile with its scope', async () => {
    const { cafile, seen } = await publish('plugin', { brokerGrantsPath: join(tmp, 'plugin', 'grants') });
    const g = globalCa.certificate.subject;
    const ta = tenantCa.certificate.subject;
    expect(subjects(readFileSync(cafile, 'utf8')).sort()).toEqual([g, ta].sort());
    const withBoth = seen.filter((s) => s.cafile.length === 2);
    expect(withBoth.length, 'a reload saw both CAs in the cafile').toBeGreaterThan(0);
    for (const s of seen) {
      for (const subject of s.cafile) {
        const scope = s.scopes?.find(([sub]) => sub === subject);
        expect(scope, `${subject} in the cafile without its scope at a reload`).toBeDefined();
        expect(scope![1]).toBe(subject === ta ? 'TA' : null);
      }
    }
  });

  it.each([
    ['acl_file mode', { brokerAclPath: 'acl' }],
    ['RabbitMQ', { brokerRabbitmq: true, brokerGrantsPath: 'grants' }],
  ])('%s: the tenant CA stays out of the cafile, no map is written', async (name, mode) => {
    const { cafile } = await publish(name.replace(/\W/g, '-'), mode);
    expect(subjects(readFileSync(cafile, 'utf8'))).toEqual([globalCa.certificate.subject]);
    expect(existsSync(`${cafile}.scopes`)).toBe(false);
  });
});
