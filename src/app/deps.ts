import type { Clock } from '../domain/clock.ts';
import type { RateLimiter } from '../domain/rate-limit.ts';
import type { BrokerAclListener, CertificateAuthority, KeySource, RevocationListener, SecretSealer } from './ports.ts';
import type { Storage } from './storage-ports.ts';

/** Everything a use case may ask for; each factory picks the few it needs. */
export interface AppDeps {
  storage: Storage;
  clock: Clock;
  authority: CertificateAuthority;
  keys: KeySource;
  revocations: RevocationListener;
  /** The broker's acl_file follows device registrations and grant changes (none: nothing to tell). */
  brokerAcl?: BrokerAclListener;
  /** Per-tenant issuance rate limit (ISSUANCE_RATE_PER_MINUTE / ISSUANCE_BURST). */
  issuanceLimit: RateLimiter;
  /** Encrypts webhook secrets before they are stored. */
  secrets: Pick<SecretSealer, 'seal'>;
  settings: { rotationGraceHours: number; webhookAllowPrivateNetworks: boolean };
}
