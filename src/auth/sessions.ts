import type { Principal } from './roles.ts';

/** A started browser session: the id goes into the HttpOnly cookie, the CSRF token to the page. */
export interface NewSession {
  id: string;
  csrfToken: string;
  expiresAt: Date;
}

/** Server-side browser sessions (revocable); the cookie only ever holds the opaque id. */
export interface SessionStore {
  start(principal: Principal): Promise<NewSession>;
  /** The session's principal, or null when unknown, expired or ended. */
  principal(id: string): Promise<{ principal: Principal; csrfMatches(sent: string): boolean } | null>;
  end(id: string): Promise<void>;
}
