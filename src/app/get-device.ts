import { AppError } from '../domain/errors.ts';
import { assertDeviceId } from '../domain/identifiers.ts';
import { findDevice } from '../storage/repos/devices-repo.ts';
import type { AppDeps } from './deps.ts';
import type { Actor } from './ports.ts';

export const deviceNotFound = (deviceId: string) => new AppError('DEVICE_NOT_FOUND', `device ${deviceId} not found`);

export function createGetDevice({ db }: Pick<AppDeps, 'db'>) {
  return async (actor: Actor, deviceId: string) => {
    assertDeviceId(deviceId);
    const device = await db.asTenant(actor.tenantId, (tx) => findDevice(tx, actor.tenantId, deviceId));
    if (!device) throw deviceNotFound(deviceId);
    return device;
  };
}
