import type { Config } from '../config.ts';
import { createPgDriver } from '../storage/pg-driver.ts';
import { migrate } from '../storage/migrate.ts';
import { openStorage } from '../composition/open-storage.ts';
import type { Flags } from './spec.ts';
import { print } from './output.ts';

export async function migrateCommand(flags: Flags, config: Config): Promise<number> {
  if (config.databaseUrl) {
    const driver = createPgDriver(config.databaseUrl, { max: 1 });
    try {
      const applied = await migrate(driver);
      print(flags, applied.length ? `applied: ${applied.join(', ')}` : 'database is up to date', { applied });
    } finally {
      await driver.close();
    }
    return 0;
  }
  const storage = await openStorage(config); // migrates on open
  await storage.close();
  print(flags, `embedded database in ${config.dataDir}/db is up to date`, { applied: [] });
  return 0;
}
