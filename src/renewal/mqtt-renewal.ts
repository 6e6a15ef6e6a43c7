/**
 * Renewal over MQTT, for devices that speak only MQTT. certfleet connects as its own broker
 * identity (the dynamic security admin, BROKER_ADMIN_*), reads every device's request topic
 * through a shared subscription (one replica answers each request) and answers on the device's
 * response topic. The broker's mutual TLS and ACL keep a device to its own request topic, and
 * the request itself proves who sent it (the broker does not say): it carries the device's
 * current certificate and a fresh signature of its key over the request (device-renewal.ts).
 *
 * Request:  {"request_id": "...", "csr_pem": "-----BEGIN CERTIFICATE REQUEST-----...",
 *            "cert_pem": current certificate, "signed_at": Unix seconds,
 *            "signature": base64 SHA-256 signature of "certfleet-renew:<request_id>:<signed_at>\n<csr_pem>" with the current key}
 * Confirm:  {"confirm": "<request_id>", "signature": base64 SHA-256 signature of
 *            "certfleet-confirm:<request_id>" with the new key}
 * Response: {"request_id", "cert_pem", "ca_cert_pem", "rotation"} | {"request_id", "confirmed": true, ...}
 *           | {"request_id", "problem": {RFC 9457 problem}}
 *           | {"request_id", "retry_after_seconds", "problem": {... "code": "SERVICE_SATURATED", "status": 503}}
 *             (certfleet is at capacity: nothing was done; send the request again, newly signed, after that many seconds)
 */
import type { BrokerAdminConnection } from '../broker/admin-credentials.ts';
import { AppError, isAppError } from '../domain/errors.ts';
import { problemOf } from '../support/problem.ts';
import type { DeviceRenewal } from './device-renewal.ts';
import { unlimitedAdmission, type Admission } from './admission.ts';
import { RECOVERY_REQUEST_TOPIC, REQUEST_FILTER, commonNameOfRequestTopic, recoveryResponseTopic, responseTopic } from './renewal-topics.ts';
import type { Logger } from '../support/logger.ts';
import { parseJsonObject } from './mqtt-json.ts';
import { connectAsAdmin } from './mqtt-admin-client.ts';

export interface MqttRenewal {
  close(): Promise<void>;
}

type RenewalMessage = { request_id?: unknown; csr_pem?: unknown; cert_pem?: unknown; signed_at?: unknown; confirm?: unknown; signature?: unknown };

const parse = (payload: Buffer): RenewalMessage => parseJsonObject<RenewalMessage>(payload, 'renewal message');

const requestIdOf = (m: RenewalMessage): string | null =>
  typeof m.request_id === 'string' ? m.request_id.slice(0, 200) : typeof m.confirm === 'string' ? m.confirm.slice(0, 200) : null;

export async function startMqttRenewal(options: { connection: BrokerAdminConnection; renewal: DeviceRenewal; logger: Logger; admission?: Admission }): Promise<MqttRenewal> {
  const { connection, renewal, logger: log } = options;
  const admission = options.admission ?? unlimitedAdmission;
  const tenantOf = (commonName: string | null) => commonName?.split('/')[0] ?? '';
  const client = await connectAsAdmin(
    connection,
    'renewal',
    [REQUEST_FILTER, RECOVERY_REQUEST_TOPIC],
    `the broker refused the renewal subscription (${REQUEST_FILTER}): is broker-config run with --mqtt-renewal?`,
  );

  async function answer(commonName: string, message: RenewalMessage) {
    if (typeof message.confirm === 'string') {
      if (typeof message.signature !== 'string') throw new AppError('VALIDATION_FAILED', 'a confirmation needs "signature"');
      // Proof: the signature of the new certificate's key of the rotation this device started.
      const device = await renewal.authenticateCommonName(commonName);
      const confirmed = await renewal.confirmWithSignature(device, message.confirm, message.signature);
      log.info({ tenant_id: device.tenantId, device_id: device.deviceId }, 'rotation confirmed by use (MQTT)');
      return { confirmed: true, rotation: confirmed };
    }
    const { request_id: requestId, csr_pem: csrPem, cert_pem: certPem, signed_at: signedAt, signature } = message;
    if (typeof requestId !== 'string' || typeof csrPem !== 'string' || typeof certPem !== 'string' || typeof signedAt !== 'number' || typeof signature !== 'string') {
      throw new AppError(
        'VALIDATION_FAILED',
        'a renewal request needs "request_id", "csr_pem", "cert_pem" (the current certificate), "signed_at" (Unix seconds) and "signature" (its key over the request; docs/device-renewal.md), or "confirm" and "signature"',
      );
    }
    // A session opened before the certificate expired stays open (Mosquitto checks certificates
    // only at connect): its request is a recovery, under the tenant's recovery rules, for the
    // device of this topic only (the ACL let only that device publish here).
    if (renewal.hasExpired(certPem)) {
      const result = await renewal.recoverWithSignedRequest({ requestId, csrPem, certPem, signedAt, signature }, commonName);
      log.info({ certificate_id: result.certificate_id, replayed: result.replayed, recovery: true }, 'MQTT renewal with an expired certificate');
      return { cert_pem: result.cert_pem, ca_cert_pem: result.ca_cert_pem, rotation: result.rotation, replayed: result.replayed };
    }
    // The topic names a device, but the broker does not tell who published: the request proves it.
    const device = await renewal.authenticateSignedRequest(commonName, { requestId, csrPem, certPem, signedAt, signature });
    const result = await renewal.renew(device, csrPem, 'mqtt', { request_id: requestId.slice(0, 200) });
    log.info({ tenant_id: device.tenantId, device_id: device.deviceId, certificate_id: result.certificate_id, replayed: result.replayed }, 'MQTT renewal');
    return { cert_pem: result.cert_pem, ca_cert_pem: result.ca_cert_pem, rotation: result.rotation, replayed: result.replayed };
  }

  /** A recovery request (an expired certificate, on the recovery listener): answered on certfleet/recover/response/<request_id>. */
  async function answerRecovery(message: RenewalMessage) {
    const { request_id: requestId, csr_pem: csrPem, cert_pem: certPem, signed_at: signedAt, signature } = message;
    if (typeof requestId !== 'string' || typeof csrPem !== 'string' || typeof certPem !== 'string' || typeof signedAt !== 'number' || typeof signature !== 'string') {
      throw new AppError('VALIDATION_FAILED', 'a recovery request needs "request_id", "csr_pem", "cert_pem" (the expired certificate), "signed_at" (Unix seconds) and "signature" (its key over the request; docs/device-renewal.md)');
    }
    const result = await renewal.recoverWithSignedRequest({ requestId, csrPem, certPem, signedAt, signature });
    log.info({ certificate_id: result.certificate_id, replayed: result.replayed, recovery: true }, 'MQTT recovery with an expired certificate');
    return { cert_pem: result.cert_pem, ca_cert_pem: result.ca_cert_pem, rotation: result.rotation, replayed: result.replayed };
  }

  const inFlight = new Set<Promise<void>>();
  const track = (work: Promise<void>) => {
    inFlight.add(work);
    void work.finally(() => inFlight.delete(work));
  };
  const problemBody = (e: unknown, topic: string) => {
    if (!isAppError(e)) log.error({ err: e, topic }, 'MQTT renewal failed');
    const retryAfter = isAppError(e) ? e.details?.retry_after_seconds : undefined;
    return {
      ...(typeof retryAfter === 'number' ? { retry_after_seconds: retryAfter } : {}),
      problem: isAppError(e) ? problemOf(e.code, e.message, e.details ? { details: e.details } : {}) : problemOf('INTERNAL', 'internal error; see the server log'),
    };
  };
  client.on('message', (topic, payload) => {
    if (topic === RECOVERY_REQUEST_TOPIC) {
      track(
        (async () => {
          let message: RenewalMessage = {};
          let body: Record<string, unknown>;
          try {
            message = parse(payload);
            const parsed = message;
            body = await admission.run(tenantOf(typeof parsed.cert_pem === 'string' ? renewal.commonNameOf(parsed.cert_pem) : null), () => answerRecovery(parsed));
          } catch (e) {
            body = problemBody(e, topic);
          }
          // The answer topic is the request's id; a request without a usable id cannot be answered.
          const requestId = typeof message.request_id === 'string' && /^[A-Za-z0-9._-]{1,128}$/.test(message.request_id) ? message.request_id : null;
          if (!requestId) return;
          await client.publishAsync(recoveryResponseTopic(requestId), JSON.stringify({ request_id: requestId, server_time: renewal.now().toISOString(), ...body }), { qos: 1 });
        })().catch((e: unknown) => log.warn({ err: e, topic }, 'could not answer a recovery request')),
      );
      return;
    }
    const commonName = commonNameOfRequestTopic(topic);
    if (!commonName) return;
    const work = (async () => {
      let message: RenewalMessage = {};
      let body: Record<string, unknown>;
      try {
        message = parse(payload);
        const parsed = message;
        // Admission first: a saturated certfleet answers SERVICE_SATURATED with retry_after_seconds before any work.
        body = await admission.run(tenantOf(commonName), () => answer(commonName, parsed));
      } catch (e) {
        body = problemBody(e, topic);
      }
      // server_time: a device without a real-time clock sets its clock from it before validating anything.
      await client.publishAsync(responseTopic(commonName), JSON.stringify({ request_id: requestIdOf(message), server_time: renewal.now().toISOString(), ...body }), { qos: 1 });
    })().catch((e: unknown) => log.warn({ err: e, topic }, 'could not answer a renewal request'));
    track(work);
  });

  return {
    async close() {
      await Promise.allSettled([...inFlight]);
      await client.endAsync();
    },
  };
}
