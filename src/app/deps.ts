import type { Clock } from '../domain/clock.ts';
import type { RateLimiter } from '../domain/rate-limit.ts';
import type { SecretSealer } from './ports.ts';
import type { CertificateAuthority, KeySource, RevocationListener } from './ports.ts';
import type { Storage } from './storage-ports.ts';

/** Everything a use case may ask for; each factory picks the few it needs. */
export interface AppDeps {
  storage: Storage;
  clock: Clock;
  authority: CertificateAuthority;
  keys: KeySource;
  revocations: RevocationListener;
  /** Per-tenant issuance rate limit (ISSUANCE_RATE_PER_MINUTE / ISSUANCE_BURST). */
  issuanceLimit: RateLimiter;
  /** Encrypts webhook secrets before they are stored. */
  secrets: Pick<SecretSealer, 'seal'>;
  settings: { rotationGraceHours: number; webhookAllowPrivateNetworks: boolean };
}
