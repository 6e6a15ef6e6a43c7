import { createApplyScheduledRevocations } from './apply-scheduled-revocations.ts';
import { createCancelRotation } from './cancel-rotation.ts';
import { createConfirmRotation } from './confirm-rotation.ts';
import type { AppDeps } from './deps.ts';
import { createGetCertificate } from './get-certificate.ts';
import { createGetDevice } from './get-device.ts';
import { createGetRotation } from './get-rotation.ts';
import { createImportCertificate } from './import-certificate.ts';
import { createIssueCertificate } from './issue-certificate.ts';
import { createListCertificates } from './list-certificates.ts';
import { createListDevices } from './list-devices.ts';
import { createRegisterDevice } from './register-device.ts';
import { createRevokeCertificate } from './revoke-certificate.ts';
import { createRotateCertificate } from './rotate-certificate.ts';

/** The application's use cases, as the HTTP layer and the CLI see them. */
export function createUseCases(deps: AppDeps) {
  return {
    registerDevice: createRegisterDevice(deps),
    getDevice: createGetDevice(deps),
    listDevices: createListDevices(deps),
    issueCertificate: createIssueCertificate(deps),
    importCertificate: createImportCertificate(deps),
    listCertificates: createListCertificates(deps),
    getCertificate: createGetCertificate(deps),
    revokeCertificate: createRevokeCertificate(deps),
    rotateCertificate: createRotateCertificate(deps),
    confirmRotation: createConfirmRotation(deps),
    cancelRotation: createCancelRotation(deps),
    getRotation: createGetRotation(deps),
    /** System-wide, for the worker's periodic tick. */
    applyScheduledRevocations: createApplyScheduledRevocations(deps),
    caCertPem: () => deps.authority.caCertPem(),
  };
}

export type UseCases = ReturnType<typeof createUseCases>;
