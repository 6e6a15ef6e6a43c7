import { call, client } from './api/client';

export interface Principal {
  subject: string;
  tenant_id: string | null;
  roles: string[];
}

export const isOperator = (p: Principal) => p.roles.some((r) => r === 'operator' || r === 'operator-admin');
export const isCustomer = (p: Principal) => p.tenant_id !== null && p.roles.some((r) => r === 'customer' || r === 'tenant-admin');

/** The current session's principal, or null when signed out. */
export async function currentPrincipal(): Promise<Principal | null> {
  return (await call(client.GET('/auth/me'))).principal;
}

/** Exchanges a token (pasted, or from the OIDC provider) for the HttpOnly session cookie and the CSRF cookie. */
export async function startSession(token: string): Promise<Principal> {
  await call(client.POST('/auth/session', { body: { token } }));
  const p = await currentPrincipal();
  if (!p) throw new Error('the session was not accepted');
  return p;
}

export async function endSession(): Promise<void> {
  await call(client.DELETE('/auth/session', { body: {} }));
}
