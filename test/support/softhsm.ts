/**
 * SoftHSM2 for tests: one token directory per test file, via SOFTHSM2_CONF pointing to a temp
 * config, set before the file first initializes the module. A worker process runs file after file
 * (vitest `isolate: false`) and keeps this module loaded, so the directory is keyed by the test
 * file: two files that both create a token "certfleet" must never see each other's. Tokens are
 * initialised with softhsm2-util; keys are imported with pkcs11-tool (Debian opensc).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { DEFAULT_PKCS11_MODULE_PATH } from '../../src/pki/kms/pkcs11/pkcs11-module.ts';

export const SOFTHSM_MODULE = process.env.TEST_PKCS11_MODULE ?? DEFAULT_PKCS11_MODULE_PATH;

const onPath = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

/** Why the SoftHSM2 tests cannot run here (shown in the skipped test's name), or null. */
export const softHsmMissing: string | null = !existsSync(SOFTHSM_MODULE)
  ? `SoftHSM2 module ${SOFTHSM_MODULE} missing (apt-get install softhsm2)`
  : !onPath('softhsm2-util')
    ? 'softhsm2-util missing (apt-get install softhsm2)'
    : !onPath('pkcs11-tool')
      ? 'pkcs11-tool missing (apt-get install opensc)'
      : null;

export const SO_PIN = '87654321';

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stdout}${r.stderr}`);
  return `${r.stdout}${r.stderr}`;
}

export interface SoftHsm {
  dir: string;
  conf: string;
  /** softhsm2-util --init-token --free: a new token with this label and user PIN. */
  initToken(label: string, pin: string): void;
  /** pkcs11-tool on the module, logged in to the token. */
  tool(token: string, pin: string, args: string[]): string;
  /** A PIN file (0600 in a 0700 folder), as PKCS11_PIN_FILE wants it. */
  pinFile(pin: string, mode?: number): string;
}

let current: { file: string | undefined; hsm: SoftHsm } | null = null;

/** The test file's SoftHSM (created once per test file; SOFTHSM2_CONF is set for this process). */
export function softHsm(): SoftHsm {
  const testFile = expect.getState().testPath;
  if (current && current.file === testFile) return current.hsm;
  const dir = mkdtempSync(join(tmpdir(), 'certfleet-softhsm-'));
  mkdirSync(join(dir, 'tokens'));
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${join(dir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  process.env.SOFTHSM2_CONF = conf;
  const env = { ...process.env, SOFTHSM2_CONF: conf };
  let pins = 0;
  const hsm: SoftHsm = {
    dir,
    conf,
    initToken: (label, pin) => void run('softhsm2-util', ['--init-token', '--free', '--label', label, '--pin', pin, '--so-pin', SO_PIN], env),
    tool: (token, pin, args) => run('pkcs11-tool', ['--module', SOFTHSM_MODULE, '--token-label', token, '--login', '--pin', pin, ...args], env),
    pinFile(pin, mode = 0o600) {
      const folder = join(dir, `pin-${++pins}`);
      mkdirSync(folder, { mode: 0o700 });
      const file = join(folder, 'pin');
      writeFileSync(file, `${pin}\n`, { mode });
      chmodSync(file, mode);
      return file;
    },
  };
  current = { file: testFile, hsm };
  return hsm;
}
