import { chmodSync, mkdirSync } from 'node:fs';
import type { Config } from '../config.ts';
import { createDatabase, type Database } from '../storage/database.ts';
import { lockDataDir } from '../storage/data-dir-lock.ts';
import type { Driver } from '../storage/driver.ts';
import { migrate } from '../storage/migrate.ts';
import { useBaselineWasmCompiler } from '../storage/pglite-wasm.ts';
import { createPgDriver } from '../storage/pg-driver.ts';

export interface Storage {
  db: Database;
  driver: Driver;
  close(): Promise<void>;
}

/** Real Postgres when DATABASE_URL is set; otherwise PGlite in the data dir, locked to this process. */
export async function openStorage(config: Pick<Config, 'databaseUrl' | 'dataDir'> & Partial<Pick<Config, 'pgliteTemplatePath' | 'pgliteSharedBuffers'>>): Promise<Storage> {
  let driver: Driver;
  let release = () => {};
  if (config.databaseUrl) {
    driver = createPgDriver(config.databaseUrl);
  } else {
    mkdirSync(config.dataDir, { recursive: true });
    release = lockDataDir(`${config.dataDir}/db.lock`);
    // The database files hold every tenant's data: owner only, whatever the umask.
    mkdirSync(`${config.dataDir}/db`, { recursive: true, mode: 0o700 });
    chmodSync(`${config.dataDir}/db`, 0o700);
    try {
      const dir = `${config.dataDir}/db`;
      // The embedded database runs on V8's baseline WebAssembly compiler (pglite-wasm.ts says why).
      useBaselineWasmCompiler();
      // PGlite (its WebAssembly Postgres) is loaded only when used: a process on Postgres never pays its import.
      const [{ createPgliteDriver, openPglite }, { templateFor, unpackTemplate }] = await Promise.all([import('../storage/pglite-driver.ts'), import('../storage/pglite-template.ts')]);
      // A new database: the template unpacked by Node (PGlite's own loader when that fails).
      let unpacked = false;
      try {
        unpacked = unpackTemplate(dir, config.pgliteTemplatePath ?? undefined);
      } catch {
        unpacked = false;
      }
      driver = createPgliteDriver(await openPglite(dir, unpacked ? undefined : templateFor(dir, config.pgliteTemplatePath ?? undefined), { sharedBuffers: config.pgliteSharedBuffers }));
      chmodSync(dir, 0o700);
    } catch (e) {
      release();
      throw e;
    }
  }
  await migrate(driver);
  return {
    db: createDatabase(driver),
    driver,
    async close() {
      await driver.close();
      release();
    },
  };
}
