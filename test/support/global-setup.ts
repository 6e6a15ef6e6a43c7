import { existsSync } from 'node:fs';
import { writePgliteTemplate } from '../../src/storage/pglite-template.ts';
import { testTemplatePath } from './pglite-template.ts';

/** Once per test run, before any test file. */
export default async function setup(): Promise<void> {
  const path = testTemplatePath();
  if (!existsSync(path)) await writePgliteTemplate(path);
}
