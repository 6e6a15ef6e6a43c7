import { mkdir, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../../support/atomic-file.ts';
import { unlessMissing } from '../../support/missing-file.ts';
import type { Flags } from '../spec.ts';
import { createApiClient, type ApiClient } from './api-client.ts';

export interface Credentials {
  url: string;
  token: string;
}

/** $XDG_CONFIG_HOME/certfleet, default ~/.config/certfleet. */
export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config'), 'certfleet');
}

export const credentialsPath = (env: NodeJS.ProcessEnv = process.env) => join(configDir(env), 'credentials.json');

export async function readStoredCredentials(env: NodeJS.ProcessEnv = process.env): Promise<Partial<Credentials>> {
  const file = credentialsPath(env);
  const text = await unlessMissing(readFile(file, 'utf8'));
  if (text === null) return {}; // never logged in
  let parsed: Partial<Credentials>;
  try {
    parsed = JSON.parse(text) as Partial<Credentials>;
  } catch (error) {
    throw new Error(`${file} is not valid JSON (${(error as Error).message}): log in again, or delete it`, { cause: error });
  }
  return { url: typeof parsed.url === 'string' ? parsed.url : undefined, token: typeof parsed.token === 'string' ? parsed.token : undefined };
}

/** Written with mode 0600 in a 0700 folder: the token is a secret. */
export async function storeCredentials(credentials: Credentials, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  await mkdir(configDir(env), { recursive: true, mode: 0o700 });
  const file = credentialsPath(env);
  await writeFileAtomic(file, `${JSON.stringify(credentials, null, 2)}\n`, 0o600);
  return file;
}

export class MissingCredentialsError extends Error {}

/** --url/--token, else CERTFLEET_URL/CERTFLEET_TOKEN, else what `certfleet login` stored. */
export async function resolveCredentials(flags: Flags, env: NodeJS.ProcessEnv = process.env): Promise<Credentials> {
  const stored = await readStoredCredentials(env);
  const url = (flags.url as string | undefined) || env.CERTFLEET_URL || stored.url;
  const token = (flags.token as string | undefined) || env.CERTFLEET_TOKEN || stored.token;
  if (!url) throw new MissingCredentialsError('no certfleet URL: pass --url, set CERTFLEET_URL, or run "certfleet login"');
  if (!token) throw new MissingCredentialsError('no token: pass --token, set CERTFLEET_TOKEN, or run "certfleet login"');
  return { url, token };
}

export async function clientFromFlags(flags: Flags): Promise<ApiClient> {
  return createApiClient(await resolveCredentials(flags));
}
