/**
 * The broker's topic namespaces (pure). They cannot overlap by construction:
 *
 * - a device's own topics: `tenant/<tenant>/device/<device>/#` (the seed's scheme);
 * - what its tenant grants every device of the tenant: `tenant/<tenant>/<filter>`, where the
 *   filter's first level is never `device`, `+` or `#` (so no grant reaches another device), and
 *   no level is empty or holds `$` (so nothing leaves the tenant);
 * - certfleet's own topics: first level `certfleet/` (renewal `certfleet/renew/<CN>/...`,
 *   provisioning `certfleet/provision/...` reserved), which no device rule can produce because
 *   every device rule above starts with `tenant/`; the renewal rules are `%u` patterns that
 *   expand to exact topics (a CN is `tenant/device`: one `/`, no wildcard character).
 *
 * Ids match `^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$` (src/domain/identifiers.ts): no `/ + # $`,
 * no whitespace, so an id is exactly one topic level and cannot break an acl_file line.
 */
import { AppError } from './errors.ts';
import { isValidId } from './identifiers.ts';

export const BROKER_GRANT_ACCESS = ['read', 'write', 'readwrite'] as const;
export type BrokerGrantAccess = (typeof BROKER_GRANT_ACCESS)[number];

/** A tenant-wide grant: every device of the tenant may `access` `tenant/<tenant>/<filter>`. */
export interface BrokerGrant {
  filter: string;
  access: BrokerGrantAccess;
}

export const MAX_BROKER_GRANTS = 32;
export const MAX_GRANT_FILTER_LENGTH = 200;
export const MAX_GRANT_FILTER_LEVELS = 8;
/** First levels a grant may not start with: another device's subtree, or a wildcard over it. */
const FORBIDDEN_FIRST_LEVELS = ['device', '+', '#'];
const LEVEL = /^[A-Za-z0-9._:-]+$/;

export const deviceTopicRoot = (tenantId: string, deviceId: string): string => `tenant/${tenantId}/device/${deviceId}`;
export const tenantTopicOf = (tenantId: string, filter: string): string => `tenant/${tenantId}/${filter}`;

const invalid = (filter: string, why: string, index?: number) =>
  new AppError('INVALID_BROKER_GRANT', `grant filter "${filter.slice(0, MAX_GRANT_FILTER_LENGTH)}": ${why}`, {
    filter: filter.slice(0, MAX_GRANT_FILTER_LENGTH),
    ...(index === undefined ? {} : { index }),
  });

/**
 * Checks one grant filter (relative to `tenant/<tenant>/`): levels of letters, digits and
 * `. _ : -`, or a whole-level `+`, or `#` as the last level; not empty, no empty level, no `$`;
 * the first level is not `device`, `+` or `#`.
 */
export function assertGrantFilter(filter: string, index?: number): string {
  if (typeof filter !== 'string' || filter.length === 0) throw invalid(String(filter), 'must not be empty', index);
  if (filter.length > MAX_GRANT_FILTER_LENGTH) throw invalid(filter, `must be at most ${MAX_GRANT_FILTER_LENGTH} characters`, index);
  if (filter.includes('$')) throw invalid(filter, '"$" topics are the broker’s own', index);
  const levels = filter.split('/');
  if (levels.length > MAX_GRANT_FILTER_LEVELS) throw invalid(filter, `must have at most ${MAX_GRANT_FILTER_LEVELS} levels`, index);
  if (FORBIDDEN_FIRST_LEVELS.includes((levels[0] ?? '').toLowerCase())) {
    throw invalid(filter, `the first level must not be ${FORBIDDEN_FIRST_LEVELS.map((l) => `"${l}"`).join(', ')}: tenant/<tenant>/device/... is each device’s own`, index);
  }
  levels.forEach((level, i) => {
    if (level === '') throw invalid(filter, 'empty levels (leading, trailing or double "/") are not allowed', index);
    if (level === '#' && i !== levels.length - 1) throw invalid(filter, '"#" must be the last level', index);
    if (level !== '+' && level !== '#' && !LEVEL.test(level)) {
      throw invalid(filter, 'a level is letters, digits and . _ : - or a whole-level "+" / "#"', index);
    }
  });
  return filter;
}

/** Validates a tenant's whole grant list (PUT semantics): at most MAX_BROKER_GRANTS, no duplicate filter. */
export function assertGrants(grants: readonly BrokerGrant[]): BrokerGrant[] {
  if (grants.length > MAX_BROKER_GRANTS) {
    throw new AppError('INVALID_BROKER_GRANT', `a tenant has at most ${MAX_BROKER_GRANTS} broker grants`, { max: MAX_BROKER_GRANTS });
  }
  const seen = new Set<string>();
  return grants.map((g, i) => {
    assertGrantFilter(g.filter, i);
    if (!BROKER_GRANT_ACCESS.includes(g.access)) throw invalid(g.filter, `access must be ${BROKER_GRANT_ACCESS.join(', ')}`, i);
    if (seen.has(g.filter)) throw invalid(g.filter, 'is listed twice', i);
    seen.add(g.filter);
    return { filter: g.filter, access: g.access };
  });
}

export interface AclDevice {
  tenantId: string;
  deviceId: string;
}

/**
 * acl_file lines for one registered device: `user <tenant>/<device>` (the certificate CN is the
 * username), its own subtree, and its tenant's grants. null when an id is not a valid id (never
 * written: it could not be a topic level, and could break the file).
 */
export function deviceAclBlock(device: AclDevice, grants: readonly BrokerGrant[]): string[] | null {
  if (!isValidId(device.tenantId) || !isValidId(device.deviceId)) return null;
  const lines = [`user ${device.tenantId}/${device.deviceId}`, `topic readwrite ${deviceTopicRoot(device.tenantId, device.deviceId)}/#`];
  for (const g of grants) lines.push(`topic ${g.access} ${tenantTopicOf(device.tenantId, g.filter)}`);
  return lines;
}
