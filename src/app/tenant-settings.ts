import type { AppDeps } from './deps.ts';
import type { Actor } from './ports.ts';

/** The tenant's settings, as the API shows them. */
export interface TenantSettings {
  tenant_id: string;
  /** One key may be certified for several devices of the tenant (default false: each device needs its own key). */
  allow_shared_device_keys: boolean;
}

/** The tenant's settings (every customer may read them). */
export function createGetTenantSettings({ storage }: Pick<AppDeps, 'storage'>) {
  return async (actor: Actor): Promise<TenantSettings> => {
    const allow = await storage.asTenant(actor.tenantId, ({ keys }) => keys.allowsSharedDeviceKeys(actor.tenantId));
    return { tenant_id: actor.tenantId, allow_shared_device_keys: allow };
  };
}

/**
 * Changes the tenant's settings (tenant-admin; checked by the route), audited with the values
 * before and after. The shared-key setting is read wherever a key is checked against the tenant's
 * other devices (assertKeyUsable), so it applies from the next issuance, rotation or import.
 */
export function createPutTenantSettings({ storage, clock }: Pick<AppDeps, 'storage' | 'clock'>) {
  return async (actor: Actor, input: { allow_shared_device_keys: boolean }): Promise<TenantSettings> => {
    const now = clock.now();
    const after = input.allow_shared_device_keys;
    await storage.asTenant(actor.tenantId, async ({ keys, audit }) => {
      const before = await keys.allowsSharedDeviceKeys(actor.tenantId);
      await keys.setAllowSharedDeviceKeys(actor.tenantId, after, now);
      await audit.recordAudit({
        tenantId: actor.tenantId,
        actor: actor.id,
        action: 'tenant_settings.updated',
        targetType: 'tenant',
        targetId: actor.tenantId,
        at: now,
        details: { before: { allow_shared_device_keys: before }, after: { allow_shared_device_keys: after } },
      });
    });
    return { tenant_id: actor.tenantId, allow_shared_device_keys: after };
  };
}
