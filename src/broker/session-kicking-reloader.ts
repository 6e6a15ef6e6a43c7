/**
 * Closing the live MQTT sessions of revoked certificates, wired around the broker reloader.
 *
 * `withSessionKicks(reloader, ...)` returns a reloader that, after each *successful* reload,
 * compares the CRL file the broker has just loaded with the one it had loaded before (the file
 * at start, then at each successful reload): the serials that are new are looked up in the
 * database, and their CNs kicked through the dynamic security plugin. A failed reload changes
 * nothing (the next successful one kicks them all), a restart of certfleet kicks nobody, and the
 * order is always reload first, then kick (otherwise the device simply reconnects).
 *
 * Configuration: BROKER_ADMIN_URL, BROKER_ADMIN_USERNAME, BROKER_ADMIN_PASSWORD_FILE,
 * BROKER_ADMIN_CA_FILE (config.brokerAdmin). The password and CA files are read at each kick (a
 * rotated password is picked up without a restart). mqtt is imported only when kicking is configured.
 */
import { readFileSync } from 'node:fs';
import type { Config } from '../config.ts';
import { newlyRevokedSerials } from '../domain/crl/crl-diff.ts';
import { crlPemToDer } from '../crl/verify-crl.ts';
import type { Database } from '../storage/database.ts';
import { commonNamesOfSerials } from '../storage/repos/certificates-repo.ts';
import { readBrokerAdmin } from './admin-credentials.ts';
import { createRevokedSessions, type RevokedSessions } from './revoked-sessions.ts';
import type { SessionKicker } from './session-kicker.ts';
import type { BrokerReloader } from './broker-reloader.ts';
import type { Logger } from '../support/logger.ts';

export function revokedSessionsFor(config: Partial<Pick<Config, 'brokerAdmin'>>, log?: Logger): RevokedSessions | null {
  const admin = config.brokerAdmin;
  if (!admin) return null;
  const kicker: SessionKicker = {
    async kick(commonName) {
      const [{ createSessionKicker }, connection] = await Promise.all([import('./session-kicker.ts'), readBrokerAdmin(admin)]);
      return createSessionKicker(connection).kick(commonName);
    },
  };
  return createRevokedSessions({ kicker, log });
}

/** The DER of the CRL file, or null when it is missing or not a PEM CRL. */
function readCrlFile(path: string): Uint8Array | null {
  try {
    return crlPemToDer(readFileSync(path, 'latin1'));
  } catch {
    return null;
  }
}

export interface SessionKickingReloader extends BrokerReloader {
  /** Resolves when the kicks started by past reloads are done (tests, shutdown). */
  idle(): Promise<void>;
}

export function withSessionKicks(
  reloader: BrokerReloader,
  deps: { crlPath: string; db: Database; sessions: RevokedSessions; log?: Logger },
): SessionKickingReloader {
  // What the broker has loaded: the file as it is now (it was there when the broker started or last reloaded).
  let loaded = readCrlFile(deps.crlPath);
  let work: Promise<unknown> = Promise.resolve();

  async function kickNew(previous: Uint8Array | null, current: Uint8Array) {
    try {
      // No baseline (the file did not exist): kicking every revoked CN would disconnect every rotated device.
      const serials = previous ? newlyRevokedSerials(previous, current) : [];
      const names = serials.length ? await deps.db.asOperator((tx) => commonNamesOfSerials(tx, serials)) : [];
      await deps.sessions.kick(names); // also retries earlier failures
    } catch (error) {
      deps.log?.warn({ event: 'broker_kick_failed', err: (error as Error).message }, 'could not work out which broker sessions to close');
    }
  }

  return {
    configured: reloader.configured,
    description: `${reloader.description}, then close live sessions of newly revoked certificates`,
    async reload() {
      await reloader.reload();
      // Read right after the reload, inside the publisher's queue: this is the file the broker just loaded.
      const current = readCrlFile(deps.crlPath);
      if (!current) return;
      const previous = loaded;
      loaded = current;
      // Kicks run after the reload returns: they never hold up the CRL publisher.
      work = work.then(() => kickNew(previous, current));
    },
    async idle() {
      for (let seen: Promise<unknown> | null = null; seen !== work; ) {
        seen = work;
        await seen;
      }
      await deps.sessions.idle();
    },
  };
}
