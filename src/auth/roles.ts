export const ROLES = ['customer', 'tenant-admin', 'operator', 'operator-admin', 'broker-agent'] as const;
export type Role = (typeof ROLES)[number];

export interface Principal {
  subject: string;
  tenantId: string | null;
  roles: Role[];
  /** When the token (or the browser session) stops being valid. */
  expiresAt: Date;
  /** The `broker_node` claim: the one broker node a `broker-agent` token may read and report for. */
  brokerNode?: string | null;
}

export const isCustomer = (p: Principal) => p.tenantId !== null && p.roles.some((r) => r === 'customer' || r === 'tenant-admin');
export const isOperator = (p: Principal) => p.roles.some((r) => r === 'operator' || r === 'operator-admin');
/** A broker agent: reads the CRL bundle and reports for its own node (`broker_node` claim), nothing else. */
export const isBrokerAgent = (p: Principal) => p.roles.includes('broker-agent') && typeof p.brokerNode === 'string';
