/**
 * CA_EXPIRING per CA record (issue 19 item 4): every CA that is not retired or revoked is watched;
 * within 30 days the alert is CRITICAL only while its scope has no next CA staged (or active).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createCheckSystemAlerts, watchedCas } from '../src/app/check-system-alerts.ts';
import { createManualClock } from '../src/domain/clock.ts';
import type { CaRecord } from '../src/domain/ca.ts';
import { SEVERITY } from '../src/domain/expiry-policy.ts';
import { createStorage } from '../src/storage/repositories.ts';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';

const DAY = 86_400_000;
const NOW = new Date('2027-01-01T00:00:00Z');

const record = (id: string, status: CaRecord['status'], notAfterDays: number, tenantId: string | null = null): CaRecord => ({
  id,
  tenantId,
  status,
  kind: 'issuing',
  parentId: null,
  serialNumber: '1',
  subject: `CN=${id}`,
  issuerLabel: id,
  issuerKeyId: `${id}-ski`,
  notBefore: new Date(NOW.getTime() - 365 * DAY),
  notAfter: new Date(NOW.getTime() + notAfterDays * DAY),
  certPem: '',
  keyRef: { kind: 'file', path: `/keys/${id}.key` },
  crlDistributionPoint: `http://x/pki/ca/${id}/crl`,
  createdAt: NOW,
  activatedAt: null,
  retiringAt: null,
  retiredAt: null,
  revokedAt: null,
  revocationReason: null,
});

describe('CA_EXPIRING per CA record', () => {
  let database: TestDatabase;
  let records: CaRecord[] = [];
  const clock = createManualClock(NOW);
  const alerts = async () =>
    (await database.db.asOperator((tx) => tx.query<{ fingerprint: string; severity: number; status: string }>(`SELECT fingerprint, severity, status FROM fleet_alert WHERE alert_type = 'CA_EXPIRING' ORDER BY fingerprint`))).rows;
  const check = () =>
    createCheckSystemAlerts({ storage: createStorage(database.db), clock, health: { node: 'n1', brokerReloadPending: () => null, cas: () => watchedCas(records) } })();

  beforeAll(async () => {
    database = await createTestDatabase('pglite');
  });
  afterAll(async () => {
    await database?.close();
  });
  beforeEach(async () => {
    await database.reset();
  });

  it('watches every CA that is not retired or revoked; CRITICAL only while no next CA is staged in its scope', async () => {
    // Within 30 days with a next global CA staged: HIGH (move its devices), not CRITICAL.
    records = [
      record('global-old', 'active', 20),
      record('global-next', 'staged', 1000),
      record('acme-ca', 'active', 100, 'acme'),
      record('gone', 'retired', 5),
      record('bad', 'revoked', 5),
    ];
    await check();
    expect(await alerts()).toEqual([
      { fingerprint: 'ca:acme-ca-ski', severity: SEVERITY.MEDIUM, status: 'OPEN' },
      { fingerprint: 'ca:global-old-ski', severity: SEVERITY.HIGH, status: 'OPEN' },
    ]);

    // The staged successor withdrawn, only another scope's CA staged: CRITICAL.
    records = [...records.filter((r) => r.id !== 'global-next'), record('acme-next', 'staged', 900, 'acme')];
    await check();
    expect((await alerts()).find((a) => a.fingerprint === 'ca:global-old-ski')).toMatchObject({ severity: SEVERITY.CRITICAL, status: 'OPEN' });

    // Retired: no longer watched, its alert closes.
    records = records.map((r) => (r.id === 'global-old' ? { ...r, status: 'retired' as const } : r));
    await check();
    expect((await alerts()).find((a) => a.fingerprint === 'ca:global-old-ski')).toMatchObject({ status: 'CLOSED' });
  });

  it('a retiring CA whose successor is active is not critical', () => {
    const watched = watchedCas([record('old', 'retiring', 10), record('new', 'active', 1000), record('t-old', 'active', 10, 't')]);
    expect(watched.map((w) => [w.recordId, w.successorStaged, w.ended])).toEqual([
      ['old', true, false],
      ['new', false, false],
      ['t-old', false, false],
    ]);
  });
});
