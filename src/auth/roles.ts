export const ROLES = ['customer', 'tenant-admin', 'operator', 'operator-admin'] as const;
export type Role = (typeof ROLES)[number];

export interface Principal {
  subject: string;
  tenantId: string | null;
  roles: Role[];
  /** When the token (or the browser session) stops being valid. */
  expiresAt: Date;
}

export const isCustomer = (p: Principal) => p.tenantId !== null && p.roles.some((r) => r === 'customer' || r === 'tenant-admin');
export const isOperator = (p: Principal) => p.roles.some((r) => r === 'operator' || r === 'operator-admin');
