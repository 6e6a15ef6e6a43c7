/**
 * The test fixture's PGlite databases (test/support/databases.ts): a database handed back is kept
 * for the next file of the same worker only when it is as a new one would be; the driver of a
 * closed test database refuses every call, so a finished file's late work never reaches the next
 * file's data.
 */
import type { PGlite } from '@electric-sql/pglite';
import { afterEach, describe, expect, it } from 'vitest';
import type { Driver } from '../src/storage/driver.ts';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';

const instanceOf = (database: TestDatabase) => (database.driver as Driver & { db: PGlite }).db;
const count = async (database: TestDatabase, sql: string) =>
  Number((await database.driver.transaction((tx) => tx.query<{ n: number }>(sql))).rows[0]!.n);

describe.runIf(process.env.CERTFLEET_TEST_FRESH_PGLITE !== '1')('PGlite test databases kept between files', () => {
  const open: TestDatabase[] = [];
  const create = async () => {
    const database = await createTestDatabase('pglite');
    open.push(database);
    return database;
  };
  afterEach(async () => {
    await Promise.all(open.splice(0).map((d) => d.close()));
  });

  it('comes back empty, its identities restarted and its session reset', async () => {
    const first = await create();
    const instance = instanceOf(first);
    await first.db.asOperator(async (tx) => {
      await tx.query(`INSERT INTO device_registry (tenant_id, device_id) VALUES ('acme', 'd1'), ('acme', 'd2')`);
      await tx.query(`INSERT INTO audit_events (tenant_id, actor, action, target_type, target_id) VALUES ('acme', 'a', 'x', 't', '1')`);
    });
    await instance.exec(`SET statement_timeout = '123s'`); // a session setting, as a careless test could leave
    await first.close();
    await expect(first.driver.transaction((tx) => tx.query('SELECT 1'))).rejects.toThrow(/closed/);

    const second = await create();
    expect(instanceOf(second), 'the same PGlite, kept').toBe(instance);
    expect(await count(second, 'SELECT count(*)::int AS n FROM device_registry')).toBe(0);
    expect(await count(second, 'SELECT count(*)::int AS n FROM audit_events')).toBe(0);
    expect((await instance.query<{ statement_timeout: string }>('SHOW statement_timeout')).rows[0]!.statement_timeout).toBe('0');
    await second.db.asOperator((tx) => tx.query(`INSERT INTO audit_events (tenant_id, actor, action, target_type, target_id) VALUES ('acme', 'a', 'x', 't', '1')`));
    expect(await count(second, 'SELECT min(id)::int AS n FROM audit_events')).toBe(1);
  });

  it('is closed, never kept, when the file changed the schema, created a role or left planner statistics', async () => {
    for (const change of [
      'ALTER TABLE device_registry ADD COLUMN extra text',
      'CREATE ROLE certfleet_test_extra_role',
      'ANALYZE device_registry',
    ]) {
      const changed = await create();
      const instance = instanceOf(changed);
      if (change.startsWith('ANALYZE')) await changed.db.asOperator((tx) => tx.query(`INSERT INTO device_registry (tenant_id, device_id) VALUES ('acme', 'd1')`));
      await instance.exec(change);
      await changed.close();
      expect(instance.closed, change).toBe(true);
      open.splice(0);
    }
    const next = await create();
    expect(await count(next, `SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 'device_registry' AND column_name = 'extra'`)).toBe(0);
  });
});
