import {
  AlreadyExistsError,
  ReferenceNotFoundError,
  type OperatorRepositories,
  type Storage,
  type TenantRepositories,
} from '../app/storage-ports.ts';
import type { Database } from './database.ts';
import type { Queryable } from './driver.ts';
import { isUniqueViolation } from './rows.ts';
import * as alerts from './repos/alerts-repo.ts';
import * as audit from './repos/audit-repo.ts';
import * as brokerAcl from './repos/broker-acl-repo.ts';
import * as brokerNodes from './repos/broker-nodes-repo.ts';
import * as cas from './repos/ca-repo.ts';
import * as certificates from './repos/certificates-repo.ts';
import * as deviceKeys from './repos/device-keys-repo.ts';
import * as crl from './repos/crl-repo.ts';
import * as devices from './repos/devices-repo.ts';
import * as fleetStats from './repos/fleet-stats-repo.ts';
import * as outbox from './repos/outbox-repo.ts';
import * as rotations from './repos/rotations-repo.ts';
import * as webhooks from './repos/webhooks-repo.ts';
import * as renewalPolicy from './repos/renewal-policy-repo.ts';
import { consecutiveFailuresOf } from './worker-leases.ts';

/** Postgres error codes, as both drivers report them, turned into the ports' errors. */
const FOREIGN_KEY_VIOLATION = '23503';

function translated(e: unknown): unknown {
  if (isUniqueViolation(e)) return new AlreadyExistsError((e as Error).message, { cause: e });
  if ((e as { code?: string })?.code === FOREIGN_KEY_VIOLATION) return new ReferenceNotFoundError((e as Error).message, { cause: e });
  return e;
}

async function translating<T>(run: Promise<T>): Promise<T> {
  try {
    return await run;
  } catch (e) {
    throw translated(e);
  }
}

/** The repository functions bound to one transaction (as the tenant role, RLS still applies). */
function tenantRepositories(tx: Queryable): TenantRepositories {
  return {
    devices: {
      insertDevice: (d) => translating(devices.insertDevice(tx, d)),
      lockDevice: (tenantId, deviceId) => devices.lockDevice(tx, tenantId, deviceId),
      findDevice: (tenantId, deviceId) => devices.findDevice(tx, tenantId, deviceId),
      listDevices: (q) => devices.listDevices(tx, q),
    },
    certificates: {
      insertCertificate: (c, event) => translating(certificates.insertCertificate(tx, c, event)),
      insertIssuedCertificates: (members) => translating(certificates.insertIssuedCertificates(tx, members)),
      findCertificate: (id) => certificates.findCertificate(tx, id),
      revokedOnEarlierCrl: (issuer, serialHex) => crl.revokedOnEarlierCrl(tx, issuer, serialHex),
      activeCertificatesOfDevice: (tenantId, deviceId, options) => certificates.activeCertificatesOfDevice(tx, tenantId, deviceId, options),
      lockCertificate: (id) => certificates.lockCertificate(tx, id),
      listCertificates: (q) => certificates.listCertificates(tx, q),
      markRevoked: (id, reason, at) => certificates.markRevoked(tx, id, reason, at),
      countExpiringWithin: (now, windowsDays, tenantId) => fleetStats.countExpiringWithin(tx, now, windowsDays, tenantId),
      fleetOverview: (now, weeks, revocations) => fleetStats.readFleetOverview(tx, now, weeks, revocations),
      activeCertificatesByCa: (tenantId, caIds, now) => fleetStats.activeCertificatesByCa(tx, tenantId, caIds, now),
    },
    rotations: {
      scheduleRevocation: (s) => rotations.scheduleRevocation(tx, s),
      pendingRotationsOfDevice: (tenantId, deviceId) => rotations.pendingRotationsOfDevice(tx, tenantId, deviceId),
      completeRotation: (id, at) => rotations.completeRotation(tx, id, at),
      completeRotationsOfOld: (oldCertificateId, at) => rotations.completeRotationsOfOld(tx, oldCertificateId, at),
      latestRotationStatus: (tenantId, deviceId) => rotations.latestRotationStatus(tx, tenantId, deviceId),
      cancelRotationsOf: (tenantId, deviceId, newCertificateId, at) => rotations.cancelRotationsOf(tx, tenantId, deviceId, newCertificateId, at),
    },
    audit: {
      recordAudit: (e) => audit.recordAudit(tx, e),
      listAuditEvents: (q) => audit.listAuditEvents(tx, q),
    },
    alerts: {
      listAlerts: (q) => alerts.listAlerts(tx, q),
      findAlert: (id) => alerts.findAlert(tx, id),
      acknowledgeAlert: (id, actor, at) => alerts.acknowledgeAlert(tx, id, actor, at),
      closeAlertManually: (id, actor, at) => alerts.closeAlertManually(tx, id, actor, at),
    },
    webhooks: {
      insertWebhook: (w) => webhooks.insertWebhook(tx, w),
      listWebhooks: () => webhooks.listWebhooks(tx),
      findWebhook: (id) => webhooks.findWebhook(tx, id),
      updateWebhook: (id, changes, now) => webhooks.updateWebhook(tx, id, changes, now),
      deleteWebhook: (id) => webhooks.deleteWebhook(tx, id),
      countWebhooksForCreate: (tenantId) => webhooks.countWebhooksForCreate(tx, tenantId),
    },
    outbox: {
      listDeliveries: (webhookId, limit) => outbox.listDeliveries(tx, webhookId, limit),
    },
    brokerGrants: {
      listBrokerGrants: (tenantId) => brokerAcl.listBrokerGrants(tx, tenantId),
      replaceBrokerGrants: (g) => brokerAcl.replaceBrokerGrants(tx, g),
    },
    keys: {
      isCompromised: (spkiSha256) => deviceKeys.isCompromised(tx, spkiSha256),
      markKeyCompromised: (certificateId, at) => deviceKeys.markKeyCompromised(tx, certificateId, at),
      otherDevicesWithKey: (tenantId, deviceId, spkiSha256) => deviceKeys.otherDevicesWithKey(tx, tenantId, deviceId, spkiSha256),
      allowsSharedDeviceKeys: (tenantId) => deviceKeys.allowsSharedDeviceKeys(tx, tenantId),
      keyStatus: (tenantId, deviceId, spkiSha256) => deviceKeys.keyStatus(tx, tenantId, deviceId, spkiSha256),
      keyStatuses: (tenantId, items) => deviceKeys.keyStatuses(tx, tenantId, items),
      setAllowSharedDeviceKeys: (tenantId, allow, at) => deviceKeys.setAllowSharedDeviceKeys(tx, tenantId, allow, at),
    },
    renewalPolicy: {
      getRenewalPolicy: (tenantId) => renewalPolicy.getRenewalPolicy(tx, tenantId),
      setRenewalPolicy: (tenantId, policy, at) => renewalPolicy.setRenewalPolicy(tx, tenantId, policy, at),
    },
  };
}

/** The tenant repositories plus the system-wide operations (operator role, BYPASSRLS). */
function operatorRepositories(tx: Queryable): OperatorRepositories {
  const tenant = tenantRepositories(tx);
  return {
    ...tenant,
    rotations: {
      ...tenant.rotations,
      claimDueRotations: (now, limit) => rotations.claimDueRotations(tx, now, limit),
    },
    alerts: {
      ...tenant.alerts,
      reconcileExpiryAlerts: (input) => alerts.reconcileExpiryAlerts(tx, input),
      expireCertificates: (input) => alerts.expireCertificates(tx, input),
      raiseSystemAlert: (a) => alerts.raiseSystemAlert(tx, a),
      resolveSystemAlert: (a) => alerts.resolveSystemAlert(tx, a),
    },
    webhooks: {
      ...tenant.webhooks,
      listPlaintextSecrets: () => webhooks.listPlaintextSecrets(tx),
      listSecretsNotUnder: (prefix, afterId, limit) => webhooks.listSecretsNotUnder(tx, prefix, afterId, limit),
      replaceStoredSecret: (id, from, to) => webhooks.replaceStoredSecret(tx, id, from, to),
      listApprovalSecretsNotUnder: (prefix, afterTenant, limit) => webhooks.listApprovalSecretsNotUnder(tx, prefix, afterTenant, limit),
      replaceApprovalSecret: (tenantId, from, to) => webhooks.replaceApprovalSecret(tx, tenantId, from, to),
    },
    outbox: {
      ...tenant.outbox,
      claimDueDeliveries: (q) => outbox.claimDueDeliveries(tx, q),
      recordDeliveryOutcomes: (outcomes) => outbox.recordDeliveryOutcomes(tx, outcomes),
      pruneDeliveries: (before, limit) => outbox.pruneDeliveries(tx, before, limit),
    },
    crl: {
      lockCrlState: (issuerKeyId) => crl.lockCrlState(tx, issuerKeyId),
      saveCrl: (issuerKeyId, stored) => crl.saveCrl(tx, issuerKeyId, stored),
      readCrlInfo: (issuerKeyId) => crl.readCrlInfo(tx, issuerKeyId),
      readCrl: (issuerKeyId) => crl.readCrl(tx, issuerKeyId),
      readCrlForFile: (issuerKeyId) => crl.readCrlForFile(tx, issuerKeyId),
      forEachRevokedCertificate: (scope, onEntry) => crl.forEachRevokedCertificate(tx, scope, onEntry),
      forEachRevokedEntry: (scope, onEncoded, onEntry) => crl.forEachRevokedEntry(tx, scope, onEncoded, onEntry),
      forEachRevokedCertificateOf: (scope, serials, onEntry) => crl.forEachRevokedCertificateOf(tx, scope, serials, onEntry),
      backfillCrlEntries: (afterId, limit) => crl.backfillCrlEntries(tx, afterId, limit),
      takePendingRevocations: (issuer) => crl.takePendingRevocations(tx, issuer),
      hasPendingRevocations: (issuer) => crl.hasPendingRevocations(tx, issuer),
      latestCrlNextUpdate: () => crl.latestCrlNextUpdate(tx),
      commonNamesOfSerials: (serials) => crl.commonNamesOfSerials(tx, serials),
      raiseCrlNumberFloor: (issuerKeyId, floor) => crl.raiseCrlNumberFloor(tx, issuerKeyId, floor),
      requestCrlRebuild: (issuer) => crl.requestCrlRebuild(tx, issuer),
      restoreRevocations: (issuer, entries, sourceCrlNumber) => crl.restoreRevocations(tx, issuer, entries, sourceCrlNumber),
      forEachRestoredRevocation: (issuer, onEntry) => crl.forEachRestoredRevocation(tx, issuer, onEntry),
      forEachEndedIntermediate: (issuer, onEntry) => cas.forEachEndedIntermediate(tx, issuer, onEntry),
    },
    renewalAdvice: {
      certificatesEnteringWindow: (now, defaultWindow, limit) => renewalPolicy.certificatesEnteringWindow(tx, now, defaultWindow, limit),
      scheduleAdvice: (rows) => renewalPolicy.scheduleAdvice(tx, rows),
      dueAdvice: (now, limit) => renewalPolicy.dueAdvice(tx, now, limit),
      markAdvicePublished: (ids, at) => renewalPolicy.markAdvicePublished(tx, ids, at),
      removeStaleAdvice: (limit) => renewalPolicy.removeStaleAdvice(tx, limit),
    },
    brokerNodes: {
      recordReport: (r) => brokerNodes.recordReport(tx, r),
      findNode: (node) => brokerNodes.findNode(tx, node),
      listNodes: () => brokerNodes.listNodes(tx),
      setCanaries: (node, kind, ids, now) => brokerNodes.setCanaries(tx, node, kind, ids, now),
      revokedCommonNames: (serials) => brokerNodes.revokedCommonNames(tx, serials),
    },
    cas: {
      listCas: () => cas.listCas(tx),
      findCa: (id, options) => cas.findCa(tx, id, options?.lock ?? false),
      findCaByKeyId: (issuerKeyId) => cas.findCaByKeyId(tx, issuerKeyId),
      insertCa: (ca) => translating(cas.insertCa(tx, ca)),
      childCas: (parentId) => cas.childCas(tx, parentId),
      lockActiveCa: (tenantId) => cas.lockActiveCa(tx, tenantId),
      setCaStatus: (id, to, from, at, reason) => translating(cas.setCaStatus(tx, id, to, from, at, reason ?? null)),
      setCaCrlUrl: (id, url) => cas.setCaCrlUrl(tx, id, url),
      caProgress: (caId, now) => cas.caProgress(tx, caId, now),
      backfillCaId: (caId, issuerLabel, limit) => cas.backfillCaId(tx, caId, issuerLabel, limit),
    },
    tasks: {
      lockTask: async (key) => {
        await alerts.lockTask(tx, key);
      },
      consecutiveFailuresOf: (name) => consecutiveFailuresOf(tx, name),
    },
  };
}

/** The use cases' Storage port over the database: each unit of work is one transaction in the right role. */
export function createStorage(db: Database): Storage {
  return {
    asTenant: (tenantId, fn, options) => db.asTenant(tenantId, (tx) => fn(tenantRepositories(tx)), options),
    asOperator: (fn) => db.asOperator((tx) => fn(operatorRepositories(tx))),
  };
}
