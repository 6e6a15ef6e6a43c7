/**
 * "Absent" means the file does not exist: a file that is there but cannot be read (here a folder
 * where a file belongs: EISDIR, as EACCES would be for another user) is an error, never read as
 * missing and silently recreated.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { crlFileTarget } from '../src/broker/agent/crl-targets.ts';
import { SERVER_CA_FILE, SERVER_CA_KEY_FILE } from '../src/broker/broker-files.ts';
import { loadServerCa } from '../src/broker/server-pki.ts';
import { readStoredCredentials } from '../src/cli/client/credentials.ts';
import { exists } from '../src/support/atomic-file.ts';
import { unlessMissing } from '../src/support/missing-file.ts';

describe('missing is not unreadable', () => {
  const dir = mkdtempSync(join(tmpdir(), 'certfleet-missing-'));

  it('unlessMissing: null for a missing file, the error for an unreadable one', async () => {
    const { readFile } = await import('node:fs/promises');
    expect(await unlessMissing(readFile(join(dir, 'nothing-here')))).toBeNull();
    expect(await unlessMissing(readFile(join(dir, 'nothing-here', 'below')))).toBeNull();
    mkdirSync(join(dir, 'a-folder'));
    await expect(unlessMissing(readFile(join(dir, 'a-folder')))).rejects.toThrow(/EISDIR/);
    expect(await exists(join(dir, 'nothing-here'))).toBe(false);
    expect(await exists(join(dir, 'a-folder'))).toBe(true);
  });

  it('the kept server CA: none is null (a new one is made), an unreadable one is an error', async () => {
    const none = join(dir, 'no-ca');
    mkdirSync(none);
    expect(await loadServerCa(none)).toBeNull();
    const broken = join(dir, 'unreadable-ca');
    mkdirSync(broken);
    writeFileSync(join(broken, SERVER_CA_FILE), 'kept certificate');
    mkdirSync(join(broken, SERVER_CA_KEY_FILE)); // the key cannot be read
    await expect(loadServerCa(broken)).rejects.toThrow(/cannot read the kept server CA/);
  });

  it("the broker agent's CRL file: missing is no CRL yet, unreadable is an error", async () => {
    expect(await crlFileTarget(join(dir, 'no.crl')).read()).toBeNull();
    mkdirSync(join(dir, 'folder.crl'));
    await expect(crlFileTarget(join(dir, 'folder.crl')).read()).rejects.toThrow(/EISDIR/);
  });

  it("the CLI's stored credentials: none is nothing stored, a damaged file is named", async () => {
    const home = join(dir, 'config-home');
    expect(await readStoredCredentials({ XDG_CONFIG_HOME: home })).toEqual({});
    mkdirSync(join(home, 'certfleet'), { recursive: true });
    writeFileSync(join(home, 'certfleet', 'credentials.json'), '{"url": "https://certfleet.example", "tok');
    await expect(readStoredCredentials({ XDG_CONFIG_HOME: home })).rejects.toThrow(/credentials\.json is not valid JSON/);
  });
});
