import { AppError } from '../domain/errors.ts';
import { assertCommonNameFits, assertDeviceId } from '../domain/identifiers.ts';
import { recordAudit } from '../storage/repos/audit-repo.ts';
import { insertDevice } from '../storage/repos/devices-repo.ts';
import { isUniqueViolation } from '../storage/rows.ts';
import type { AppDeps } from './deps.ts';
import type { Actor } from './ports.ts';

export function createRegisterDevice({ db, clock }: Pick<AppDeps, 'db' | 'clock'>) {
  return async (actor: Actor, input: { device_id: string; site_id?: string | null }) => {
    const deviceId = assertDeviceId(input.device_id);
    assertCommonNameFits(actor.tenantId, deviceId);
    const now = clock.now();
    try {
      return await db.asTenant(actor.tenantId, async (tx) => {
        const device = await insertDevice(tx, { tenantId: actor.tenantId, deviceId, siteId: input.site_id ?? null, now });
        await recordAudit(tx, { tenantId: actor.tenantId, actor: actor.id, action: 'device.registered', targetType: 'device', targetId: deviceId, at: now });
        return device;
      });
    } catch (e) {
      if (isUniqueViolation(e)) throw new AppError('DEVICE_EXISTS', `device ${deviceId} is already registered`);
      throw e;
    }
  };
}
