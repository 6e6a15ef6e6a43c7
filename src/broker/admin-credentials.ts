import { readFile } from 'node:fs/promises';
import type { Config } from '../config.ts';

export interface BrokerAdminConnection {
  url: string;
  username: string;
  password: string;
  ca?: Buffer;
}

/** certfleet's own broker identity (BROKER_ADMIN_*): the password and CA files are read now. */
export async function readBrokerAdmin(admin: NonNullable<Config['brokerAdmin']>): Promise<BrokerAdminConnection> {
  const [password, ca] = await Promise.all([
    readFile(admin.passwordFile, 'utf8').then((text) => text.trim()),
    admin.caFile ? readFile(admin.caFile) : Promise.resolve(undefined),
  ]);
  return { url: admin.url, username: admin.username, password, ca };
}
