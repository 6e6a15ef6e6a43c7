import { AppError } from '../domain/errors.ts';
import { assertDeviceId } from '../domain/identifiers.ts';
import type { AppDeps } from './deps.ts';
import type { Actor } from './ports.ts';

export const deviceNotFound = (deviceId: string) => new AppError('DEVICE_NOT_FOUND', `device ${deviceId} not found`);

export function createGetDevice({ storage }: Pick<AppDeps, 'storage'>) {
  return async (actor: Actor, deviceId: string) => {
    assertDeviceId(deviceId);
    const device = await storage.asTenant(actor.tenantId, ({ devices }) => devices.findDevice(actor.tenantId, deviceId));
    if (!device) throw deviceNotFound(deviceId);
    return device;
  };
}
