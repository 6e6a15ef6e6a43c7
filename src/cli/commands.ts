import type { ParseArgsConfig } from 'node:util';
import type { Config } from '../config.ts';
import { initCaCommand } from './init-ca.ts';
import { migrateCommand } from './migrate.ts';
import { serveCommand } from './serve.ts';
import { tokenCommand } from './token.ts';

export type Flags = Record<string, string | boolean | undefined>;

export interface Command {
  options: NonNullable<ParseArgsConfig['options']>;
  run(flags: Flags, config: Config): Promise<number>;
}

const json = { json: { type: 'boolean' } } as const;

export const commands: Record<string, Command> = {
  serve: { options: { ...json }, run: (flags, config) => serveCommand(flags, config, { api: true, worker: true }) },
  api: { options: { ...json }, run: (flags, config) => serveCommand(flags, config, { api: true, worker: false }) },
  migrate: { options: { ...json }, run: migrateCommand },
  'init-ca': {
    options: { ...json, 'key-type': { type: 'string' }, out: { type: 'string' }, cn: { type: 'string' } },
    run: initCaCommand,
  },
  token: {
    options: { ...json, tenant: { type: 'string' }, role: { type: 'string' }, ttl: { type: 'string' }, sub: { type: 'string' } },
    run: tokenCommand,
  },
};
