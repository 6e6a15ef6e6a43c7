import type { Clock } from '../domain/clock.ts';
import type { Database } from '../storage/database.ts';
import type { CertificateAuthority, KeySource, RevocationListener } from './ports.ts';

/** Everything a use case may ask for; each factory picks the few it needs. */
export interface AppDeps {
  db: Database;
  clock: Clock;
  authority: CertificateAuthority;
  keys: KeySource;
  revocations: RevocationListener;
  settings: { rotationGraceHours: number };
}
