import { AppError } from '../domain/errors.ts';
import type { AppDeps } from './deps.ts';
import type { Actor } from './ports.ts';

export const certificateNotFound = (id: number) => new AppError('CERTIFICATE_NOT_FOUND', `certificate ${id} not found`);

export function createGetCertificate({ storage }: Pick<AppDeps, 'storage'>) {
  return async (actor: Actor, id: number) => {
    const cert = await storage.asTenant(actor.tenantId, ({ certificates }) => certificates.findCertificate(id));
    if (!cert) throw certificateNotFound(id);
    return cert;
  };
}
