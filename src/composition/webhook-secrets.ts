import { mkdir, readFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname } from 'node:path';
import type { Config } from '../config.ts';
import { assertKeyFileProtected } from '../pki/key-file-permissions.ts';
import { createSecretBox, parseSecretKey, SECRET_KEY_BYTES, type SecretSealer } from '../pki/secret-box.ts';
import { writeFileAtomicNew } from '../support/atomic-file.ts';

export interface WebhookSecrets {
  box: SecretSealer;
  source: 'env' | 'file';
  /** Set when the key came from a file while DATABASE_URL is set: other replicas may not share it. */
  warning: string | null;
}

/** The key file: created on first use (0600, race-safe), read by every later process on this data dir. */
export async function loadOrCreateSecretKeyFile(path: string): Promise<Buffer> {
  const read = async () => {
    await assertKeyFileProtected(path, 'the webhook secret key');
    return parseSecretKey(await readFile(path, 'utf8'), path);
  };
  try {
    return await read();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  try {
    // Written whole under a temporary name, then linked into place: another process starting at the
    // same moment (the API processes of one cluster) sees no file or the whole key, never the
    // empty file an exclusive create shows until its write lands ("must be 32 bytes": seen in CI).
    await writeFileAtomicNew(path, `${randomBytes(SECRET_KEY_BYTES).toString('base64')}\n`, 0o600);
  } catch (err) {
    // Another process created it first: use theirs.
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  return read();
}

/** WEBHOOK_SECRET_KEY when set, else the key file in the data dir; WEBHOOK_SECRET_KEY_PREVIOUS also opens (a rotation). */
export async function loadWebhookSecrets(
  config: Pick<Config, 'webhookSecretKey' | 'webhookSecretKeyPath' | 'databaseUrl'> & Partial<Pick<Config, 'webhookSecretKeyPrevious'>>,
): Promise<WebhookSecrets> {
  const previous = config.webhookSecretKeyPrevious ? [config.webhookSecretKeyPrevious] : [];
  if (config.webhookSecretKey) return { box: createSecretBox(config.webhookSecretKey, previous), source: 'env', warning: null };
  const box = createSecretBox(await loadOrCreateSecretKeyFile(config.webhookSecretKeyPath), previous);
  const warning = config.databaseUrl
    ? `WEBHOOK_SECRET_KEY is not set: webhook secrets are encrypted with the key file ${config.webhookSecretKeyPath}. ` +
      'Every API and worker replica must use the same key: set WEBHOOK_SECRET_KEY (32 bytes, base64) in production.'
    : null;
  return { box, source: 'file', warning };
}
