import { AppError } from '../domain/errors.ts';
import { assertCommonNameFits, assertDeviceId, assertNotReserved } from '../domain/identifiers.ts';
import type { AppDeps } from './deps.ts';
import type { Actor } from './ports.ts';
import { AlreadyExistsError } from './storage-ports.ts';

export function createRegisterDevice({ storage, clock, brokerAcl }: Pick<AppDeps, 'storage' | 'clock' | 'brokerAcl'>) {
  /**
   * `system`: certfleet's own devices (the broker canaries of the reserved tenant): never reachable
   * from a request, whose actor can never be of that tenant (the token verifier refuses it).
   */
  return async (actor: Actor, input: { device_id: string; site_id?: string | null }, options: { system?: boolean } = {}) => {
    const deviceId = assertDeviceId(input.device_id);
    assertCommonNameFits(actor.tenantId, deviceId);
    if (!options.system) assertNotReserved(actor.tenantId, deviceId);
    const now = clock.now();
    let device;
    try {
      device = await storage.asTenant(actor.tenantId, async ({ devices, audit }) => {
        const inserted = await devices.insertDevice({ tenantId: actor.tenantId, deviceId, siteId: input.site_id ?? null, now });
        await audit.recordAudit({ tenantId: actor.tenantId, actor: actor.id, action: 'device.registered', targetType: 'device', targetId: deviceId, at: now });
        return inserted;
      });
    } catch (e) {
      if (e instanceof AlreadyExistsError) throw new AppError('DEVICE_EXISTS', `device ${deviceId} is already registered`);
      throw e;
    }
    // The broker's acl_file gets the device's topics (tenant/<tenant>/device/<device>/#) before the answer, where this process keeps it.
    await brokerAcl?.aclChanged();
    return device;
  };
}
