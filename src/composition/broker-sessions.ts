/**
 * Wiring of the session kicker from the environment (BROKER_ADMIN_URL, BROKER_ADMIN_USERNAME,
 * BROKER_ADMIN_PASSWORD_FILE, BROKER_ADMIN_CA_FILE). Null when BROKER_ADMIN_URL is unset: revoked
 * devices are then refused at their next connect, but live sessions stay open.
 *
 * The password and CA files are read at each kick (revocations are rare; a rotated password is
 * picked up without a restart). mqtt is imported only here, only when kicking is configured.
 */
import { readFile } from 'node:fs/promises';
import type { Config } from '../config.ts';
import { createRevokedSessions, type RevokedSessions, type RevokedSessionsLogger } from '../broker/revoked-sessions.ts';
import type { SessionKicker } from '../broker/session-kicker.ts';

export function revokedSessionsFor(config: Pick<Config, 'brokerAdmin'>, log?: RevokedSessionsLogger): RevokedSessions | null {
  const admin = config.brokerAdmin;
  if (!admin) return null;
  const kicker: SessionKicker = {
    async kick(commonName) {
      const [{ createSessionKicker }, password, ca] = await Promise.all([
        import('../broker/session-kicker.ts'),
        readFile(admin.passwordFile, 'utf8').then((text) => text.trim()),
        admin.caFile ? readFile(admin.caFile) : Promise.resolve(undefined),
      ]);
      return createSessionKicker({ url: admin.url, username: admin.username, password, ca }).kick(commonName);
    },
  };
  return createRevokedSessions({ kicker, log });
}
