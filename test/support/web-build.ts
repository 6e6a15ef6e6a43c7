import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { WEB_CONSOLE_DIR } from '../../src/http/routes/web-console.ts';

/** The console's assets, built now when a fresh clone has none (npm ci normally builds them through prepare). */
export function ensureWebBuilt(): void {
  if (existsSync(`${WEB_CONSOLE_DIR}/index.html`)) return;
  execFileSync('npm', ['run', 'build:web'], { stdio: 'inherit', timeout: 300_000 });
}
