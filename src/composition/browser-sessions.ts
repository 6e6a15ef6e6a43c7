import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { ROLES, type Principal, type Role } from '../auth/roles.ts';
import type { SessionStore } from '../auth/sessions.ts';
import type { Clock } from '../domain/clock.ts';
import type { Database } from '../storage/database.ts';
import { deleteExpiredSessions, deleteSession, findSession, insertSession } from '../storage/repos/sessions-repo.ts';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const MAX_ID_LENGTH = 128;

/** Sessions in the database (shared by every API replica); ids and CSRF tokens are stored only as hashes. */
export function createSessionStore(deps: { db: Database; clock: Clock }): SessionStore {
  return {
    async start(principal) {
      const id = randomBytes(32).toString('base64url');
      const csrfToken = randomBytes(24).toString('base64url');
      const now = deps.clock.now();
      await deps.db.asOperator(async (tx) => {
        await deleteExpiredSessions(tx, now);
        await insertSession(
          tx,
          sha256(id),
          { csrfSha256: sha256(csrfToken), subject: principal.subject, tenantId: principal.tenantId, roles: principal.roles, expiresAt: principal.expiresAt },
          now,
        );
      });
      return { id, csrfToken, expiresAt: principal.expiresAt };
    },
    async principal(id) {
      if (id.length === 0 || id.length > MAX_ID_LENGTH) return null;
      const stored = await deps.db.asOperator((tx) => findSession(tx, sha256(id), deps.clock.now()));
      if (!stored) return null;
      const expected = Buffer.from(stored.csrfSha256, 'hex');
      return {
        principal: {
          subject: stored.subject,
          tenantId: stored.tenantId,
          roles: stored.roles.filter((r): r is Role => (ROLES as readonly string[]).includes(r)),
          expiresAt: stored.expiresAt,
        } satisfies Principal,
        csrfMatches: (sent) => timingSafeEqual(Buffer.from(sha256(sent), 'hex'), expected),
      };
    },
    async end(id) {
      if (id.length === 0 || id.length > MAX_ID_LENGTH) return;
      await deps.db.asOperator((tx) => deleteSession(tx, sha256(id)));
    },
  };
}
