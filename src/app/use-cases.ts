import { createFleetOverview } from './fleet-overview.ts';
import { createAcknowledgeAlert } from './acknowledge-alert.ts';
import { createApplyScheduledRevocations } from './apply-scheduled-revocations.ts';
import { createCancelRotation } from './cancel-rotation.ts';
import { createCloseAlert } from './close-alert.ts';
import { createConfirmRotation } from './confirm-rotation.ts';
import { createCreateWebhook } from './create-webhook.ts';
import { createDeleteWebhook } from './delete-webhook.ts';
import type { AppDeps } from './deps.ts';
import { createGetCertificate } from './get-certificate.ts';
import { createGetDevice } from './get-device.ts';
import { createGetRotation } from './get-rotation.ts';
import { createImportCertificate } from './import-certificate.ts';
import { createIssueCertificate } from './issue-certificate.ts';
import { createListCertificates } from './list-certificates.ts';
import { createListDevices } from './list-devices.ts';
import { createListAuditEvents } from './list-audit-events.ts';
import { createSummarizeExpiry } from './summarize-expiry.ts';
import { createGetAlert, createListAlerts } from './list-alerts.ts';
import { createGetWebhook, createListWebhookDeliveries, createListWebhooks } from './list-webhooks.ts';
import { createRotateWebhookSecret, createUpdateWebhook } from './update-webhook.ts';
import { createRegisterDevice } from './register-device.ts';
import { createGetBrokerGrants, createPutBrokerGrants } from './broker-grants.ts';
import { createGetRenewalPolicy, createPutRenewalPolicy } from './renewal-policy.ts';
import { createGetTenantSettings, createPutTenantSettings } from './tenant-settings.ts';
import { createRevokeCertificate } from './revoke-certificate.ts';
import { createRotateCertificate, createStartRotation } from './rotate-certificate.ts';

/** The application's use cases, as the HTTP layer and the CLI see them. */
export function createUseCases(deps: AppDeps) {
  return {
    registerDevice: createRegisterDevice(deps),
    getBrokerGrants: createGetBrokerGrants(deps),
    putBrokerGrants: createPutBrokerGrants(deps),
    getRenewalPolicy: createGetRenewalPolicy(deps),
    putRenewalPolicy: createPutRenewalPolicy(deps),
    getTenantSettings: createGetTenantSettings(deps),
    putTenantSettings: createPutTenantSettings(deps),
    getDevice: createGetDevice(deps),
    listDevices: createListDevices(deps),
    issueCertificate: createIssueCertificate(deps),
    importCertificate: createImportCertificate(deps),
    listCertificates: createListCertificates(deps),
    getCertificate: createGetCertificate(deps),
    revokeCertificate: createRevokeCertificate(deps),
    rotateCertificate: createRotateCertificate(deps),
    /** Rotation for any entry point (API, device-initiated renewal): returns the pending rotation instead of throwing. */
    startRotation: createStartRotation(deps),
    confirmRotation: createConfirmRotation(deps),
    cancelRotation: createCancelRotation(deps),
    getRotation: createGetRotation(deps),
    /** System-wide, for the worker's periodic tick. */
    applyScheduledRevocations: createApplyScheduledRevocations(deps),
    listAlerts: createListAlerts(deps),
    getAlert: createGetAlert(deps),
    acknowledgeAlert: createAcknowledgeAlert(deps),
    closeAlert: createCloseAlert(deps),
    createWebhook: createCreateWebhook(deps),
    listWebhooks: createListWebhooks(deps),
    getWebhook: createGetWebhook(deps),
    updateWebhook: createUpdateWebhook(deps),
    rotateWebhookSecret: createRotateWebhookSecret(deps),
    deleteWebhook: createDeleteWebhook(deps),
    listWebhookDeliveries: createListWebhookDeliveries(deps),
    listAuditEvents: createListAuditEvents(deps),
    summarizeExpiry: createSummarizeExpiry(deps),
    fleetOverview: createFleetOverview(deps),
    caCertPem: (tenantId?: string) => deps.authority.caCertPem(tenantId),
  };
}

export type UseCases = ReturnType<typeof createUseCases>;
