import type { Queryable } from '../driver.ts';

export interface StoredSession {
  csrfSha256: string;
  subject: string;
  tenantId: string | null;
  roles: string[];
  expiresAt: Date;
}

export async function insertSession(tx: Queryable, idSha256: string, session: StoredSession, now: Date): Promise<void> {
  await tx.query(
    `INSERT INTO browser_sessions (id_sha256, csrf_sha256, subject, tenant_id, roles, created_at, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7)`,
    [idSha256, session.csrfSha256, session.subject, session.tenantId, session.roles, now, session.expiresAt],
  );
}

/** The session if it exists and has not expired at `now`. */
export async function findSession(tx: Queryable, idSha256: string, now: Date): Promise<StoredSession | null> {
  const { rows } = await tx.query<{ csrf_sha256: string; subject: string; tenant_id: string | null; roles: string[]; expires_at: unknown }>(
    'SELECT csrf_sha256, subject, tenant_id, roles, expires_at FROM browser_sessions WHERE id_sha256 = $1 AND expires_at > $2',
    [idSha256, now],
  );
  const r = rows[0];
  if (!r) return null;
  const expiresAt = r.expires_at instanceof Date ? r.expires_at : new Date(String(r.expires_at));
  return { csrfSha256: r.csrf_sha256, subject: r.subject, tenantId: r.tenant_id, roles: r.roles, expiresAt };
}

export async function deleteSession(tx: Queryable, idSha256: string): Promise<void> {
  await tx.query('DELETE FROM browser_sessions WHERE id_sha256 = $1', [idSha256]);
}

export async function deleteExpiredSessions(tx: Queryable, now: Date): Promise<number> {
  return (await tx.query('DELETE FROM browser_sessions WHERE expires_at <= $1', [now])).rowCount;
}
