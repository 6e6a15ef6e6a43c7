/**
 * Each command validates only the settings it uses: `certfleet broker-config` (which makes the
 * certificate the EST listener serves) runs with EST_PORT set and no EST_TLS_CERT_PATH yet, while
 * the EST listener itself still refuses to start without its certificate and key.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as config from '../src/config.ts';

const BIN = join(import.meta.dirname, 'support', 'certfleet-source.js');

describe('settings are validated by the commands that use them', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'certfleet-config-scope-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('broker-config runs with EST_PORT set before the EST certificate exists', () => {
    const env: NodeJS.ProcessEnv = { ...process.env, CERTFLEET_DATA_DIR: join(tmp, 'data'), EST_PORT: '8443' };
    delete env.EST_TLS_CERT_PATH;
    delete env.EST_TLS_KEY_PATH;
    const res = spawnSync(process.execPath, [BIN, 'broker-config', '--out', join(tmp, 'broker'), '--json'], { encoding: 'utf8', env });
    expect(res.stderr).toBe('');
    expect(res.status).toBe(0);
    expect(Object.keys((JSON.parse(res.stdout) as { files: Record<string, string> }).files)).toContain('serverCert');
  });

  it('the EST listener refuses EST_PORT without its TLS certificate and key, naming them', () => {
    const dataDir = join(tmp, 'data');
    expect(() => config.estListenerConfig(config.loadConfig({ CERTFLEET_DATA_DIR: dataDir, EST_PORT: '8443' }))).toThrow(/EST_TLS_CERT_PATH and EST_TLS_KEY_PATH/);
    const configured = config.loadConfig({ CERTFLEET_DATA_DIR: dataDir, EST_PORT: '8443', EST_TLS_CERT_PATH: 'a.crt', EST_TLS_KEY_PATH: 'a.key' });
    expect(config.estListenerConfig(configured)).toMatchObject({ port: 8443, tlsCertPath: join(process.cwd(), 'a.crt') });
    expect(config.estListenerConfig(config.loadConfig({ CERTFLEET_DATA_DIR: dataDir }))).toBeNull();
  });
});
