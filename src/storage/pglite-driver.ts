import { PGlite } from '@electric-sql/pglite';
import { queryableFrom, type Driver } from './driver.ts';
import { pgliteWasmModule } from './pglite-wasm.ts';

export const PGLITE_OPTIONS = { parsers: { 20: (v: string) => Number(v) } };

/** PGlite runs one statement at a time; its transaction() queues callers behind a mutex. */
export function createPgliteDriver(db: PGlite): Driver & { db: PGlite } {
  return {
    kind: 'pglite',
    db,
    transaction: (fn, prelude) =>
      db.transaction(async (tx) => {
        if (prelude) await tx.exec(prelude);
        return fn(queryableFrom(
          (sql, params) => tx.query(sql, params as unknown[]),
          (sql) => tx.exec(sql),
        ));
      }),
    close: () => db.close(),
  };
}

/**
 * In memory without a data dir. A new database (in memory, or an empty data dir) starts from
 * `template` when given: a packed, migrated data dir (see pglite-template.ts), instead of initdb.
 */
export async function openPglite(dataDir?: string, template?: Blob, options: { sharedBuffers?: string | null } = {}): Promise<PGlite> {
  const pgliteWasm = await pgliteWasmModule(); // compiled once per process (pglite-wasm.ts)
  // A smaller buffer pool (CERTFLEET_PGLITE_SHARED_BUFFERS) is also a cheaper start: 32MB instead of
  // the default 128MB, about 0.4 s of CPU less per process (measured 2026-12-08).
  const startParams = options.sharedBuffers ? { startParams: [...PGlite.defaultStartParams, '-c', `shared_buffers=${options.sharedBuffers}`] } : {};
  return PGlite.create({ ...(dataDir ? { dataDir } : {}), ...PGLITE_OPTIONS, ...(template ? { loadDataDir: template } : {}), ...startParams, pgliteWasmModule: pgliteWasm });
}
