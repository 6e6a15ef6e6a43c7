import type { ParseArgsConfig } from 'node:util';
import type { Config } from '../config.ts';

export type Flags = Record<string, string | boolean | undefined>;

export interface Command {
  options: NonNullable<ParseArgsConfig['options']>;
  run(flags: Flags, config: Config): Promise<number>;
}

const json = { json: { type: 'boolean' } } as const;

// Commands are imported when run, so `token` or `init-ca` do not load the whole service.
const serveCommand = async (flags: Flags, config: Config, parts: { api: boolean; worker: boolean }) =>
  (await import('./serve.ts')).serveCommand(flags, config, parts);
const migrateCommand = async (flags: Flags, config: Config) => (await import('./migrate.ts')).migrateCommand(flags, config);
const initCaCommand = async (flags: Flags, config: Config) => (await import('./init-ca.ts')).initCaCommand(flags, config);
const tokenCommand = async (flags: Flags, config: Config) => (await import('./token.ts')).tokenCommand(flags, config);
const workerCommand = async (flags: Flags, config: Config) => (await import('./worker.ts')).workerCommand(flags, config);
const brokerConfigCommand = async (flags: Flags, config: Config) => (await import('./broker-config.ts')).brokerConfigCommand(flags, config);

export const commands: Record<string, Command> = {
  serve: { options: { ...json }, run: (flags, config) => serveCommand(flags, config, { api: true, worker: true }) },
  api: { options: { ...json }, run: (flags, config) => serveCommand(flags, config, { api: true, worker: false }) },
  worker: { options: { ...json, once: { type: 'boolean' }, 'metrics-port': { type: 'string' } }, run: workerCommand },
  migrate: { options: { ...json }, run: migrateCommand },
  'init-ca': {
    options: { ...json, 'key-type': { type: 'string' }, out: { type: 'string' }, cn: { type: 'string' } },
    run: initCaCommand,
  },
  token: {
    options: { ...json, tenant: { type: 'string' }, role: { type: 'string' }, ttl: { type: 'string' }, sub: { type: 'string' } },
    run: tokenCommand,
  },
  'broker-config': {
    options: {
      ...json,
      out: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      bind: { type: 'string' },
      'pid-file': { type: 'string' },
      renew: { type: 'boolean' },
      'server-cert-days': { type: 'string' },
      'server-cert': { type: 'string' },
      'server-key': { type: 'string' },
      'server-ca': { type: 'string' },
      'broker-user': { type: 'string' },
      'no-kick': { type: 'boolean' },
      'dynsec-plugin': { type: 'string' },
      'admin-host': { type: 'string' },
      'admin-port': { type: 'string' },
      'admin-password-file': { type: 'string' },
    },
    run: brokerConfigCommand,
  },
};
