import { AppError } from '../domain/errors.ts';
import { findCertificate } from '../storage/repos/certificates-repo.ts';
import type { AppDeps } from './deps.ts';
import type { Actor } from './ports.ts';

export const certificateNotFound = (id: number) => new AppError('CERTIFICATE_NOT_FOUND', `certificate ${id} not found`);

export function createGetCertificate({ db }: Pick<AppDeps, 'db'>) {
  return async (actor: Actor, id: number) => {
    const cert = await db.asTenant(actor.tenantId, (tx) => findCertificate(tx, id));
    if (!cert) throw certificateNotFound(id);
    return cert;
  };
}
