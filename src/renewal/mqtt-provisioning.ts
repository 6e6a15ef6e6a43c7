/**
 * Factory (claim) onboarding over MQTT: the provisioning listener (`broker-config
 * --provisioning-port`) lets a device in with its claim certificate (issued by its manufacturer's
 * claim CA), logged in as `certfleet-claim:<sha256 of the claim certificate>`; the certfleet_acl
 * plugin lets it publish only `certfleet/provision/<that sha256>/request` and read only
 * `.../response`. certfleet reads every request as its broker admin (a shared subscription: one
 * replica answers each) and answers on the topic of the claim certificate that published it.
 *
 * The broker does not say who published, but the topic does: only the client whose TLS
 * certificate has that SHA-256 may publish there. The request carries that certificate and a
 * signature of its key over the request (so certfleet knows which claim certificate sent it, and
 * a replayed request is refused); a certificate that is not the topic's is refused. Everything
 * else (the tenant's claim CAs, provisioning policy, approval webhook, one claim one device,
 * replay records, audit) is the one claim use case EST uses too (claim-onboarding.ts).
 *
 * Request:  {"request_id": "...", "tenant_id": "acme", "claim_cert_pem": the claim certificate,
 *            "csr_pem": a CSR for the device's new key, "signed_at": Unix seconds,
 *            "signature": base64 SHA-256 signature of
 *            "certfleet-provision:<request_id>:<signed_at>\n<csr_pem>" with the claim key}
 * Response: {"request_id", "server_time", "device_id", "certificate_id", "cert_pem", "ca_cert_pem", "replayed"}
 *           | {"request_id", "server_time", "problem": {RFC 9457 problem, "code"}}
 *           | {..., "retry_after_seconds", "problem": {"code": "SERVICE_SATURATED"}} (send it again, newly signed, after that long)
 */
import { createHash } from 'node:crypto';
import type { BrokerAdminConnection } from '../broker/admin-credentials.ts';
import { AppError, isAppError } from '../domain/errors.ts';
import { pemBlocks } from '../pki/pem.ts';
import { problemOf } from '../support/problem.ts';
import type { Logger } from '../support/logger.ts';
import { parseJsonObject } from './mqtt-json.ts';
import { connectAsAdmin } from './mqtt-admin-client.ts';
import { unlimitedAdmission, type Admission } from './admission.ts';
import type { ClaimOnboarding } from './claim-onboarding.ts';
import { PROVISION_REQUEST_FILTER, claimDigestOfRequestTopic, provisionResponseTopic } from './renewal-topics.ts';

export interface MqttProvisioning {
  close(): Promise<void>;
}

type ProvisioningMessage = { request_id?: unknown; tenant_id?: unknown; claim_cert_pem?: unknown; csr_pem?: unknown; signed_at?: unknown; signature?: unknown };

const parse = (payload: Buffer): ProvisioningMessage => parseJsonObject<ProvisioningMessage>(payload, 'provisioning request');

/**
 * The request, checked against the topic: `claim_cert_pem` must be the certificate whose SHA-256
 * the topic names (the one the broker authenticated), or nothing is done.
 */
export function provisioningRequest(topicDigest: string, m: ProvisioningMessage) {
  const { request_id: requestId, tenant_id: tenantId, claim_cert_pem: claimPem, csr_pem: csrPem, signed_at: signedAt, signature } = m;
  if (
    typeof requestId !== 'string' ||
    typeof tenantId !== 'string' ||
    typeof claimPem !== 'string' ||
    typeof csrPem !== 'string' ||
    typeof signedAt !== 'number' ||
    typeof signature !== 'string'
  ) {
    throw new AppError(
      'VALIDATION_FAILED',
      'a provisioning request needs "request_id", "tenant_id", "claim_cert_pem" (the claim certificate), "csr_pem", "signed_at" (Unix seconds) and "signature" (the claim key over the request; docs/device-provisioning.md)',
    );
  }
  const blocks = pemBlocks(claimPem, 'CERTIFICATE');
  const der = blocks[0];
  if (blocks.length !== 1 || !der) throw new AppError('VALIDATION_FAILED', 'claim_cert_pem must hold exactly one PEM certificate (the claim certificate)');
  if (createHash('sha256').update(der).digest('hex') !== topicDigest) {
    throw new AppError('FORBIDDEN', 'claim_cert_pem is not the claim certificate this connection authenticated with (the SHA-256 in the topic)');
  }
  return { tenantId, claimDer: new Uint8Array(der), csrPem, signed: { requestId, signedAt, signature } };
}

export async function startMqttProvisioning(options: {
  connection: BrokerAdminConnection;
  claims: Pick<ClaimOnboarding, 'enrollWithClaim'>;
  now: () => Date;
  logger: Logger;
  admission?: Admission;
}): Promise<MqttProvisioning> {
  const { connection, claims, logger: log } = options;
  const admission = options.admission ?? unlimitedAdmission;
  const client = await connectAsAdmin(
    connection,
    'provisioning',
    [PROVISION_REQUEST_FILTER],
    `the broker refused the provisioning subscription (${PROVISION_REQUEST_FILTER}): is broker-config run with --provisioning-port?`,
  );

  async function answer(digest: string, message: ProvisioningMessage) {
    const request = provisioningRequest(digest, message);
    const result = await admission.run(request.tenantId, () => claims.enrollWithClaim(request.tenantId, request.claimDer, request.csrPem, 'mqtt', request.signed));
    log.info({ tenant_id: request.tenantId, device_id: result.device_id, certificate_id: result.certificate_id, replayed: result.replayed }, 'MQTT provisioning with a claim certificate');
    return { device_id: result.device_id, certificate_id: result.certificate_id, cert_pem: result.cert_pem, ca_cert_pem: result.ca_cert_pem, replayed: result.replayed };
  }

  const inFlight = new Set<Promise<void>>();
  client.on('message', (topic, payload) => {
    const digest = claimDigestOfRequestTopic(topic);
    if (!digest) return;
    const work = (async () => {
      let message: ProvisioningMessage = {};
      let body: Record<string, unknown>;
      try {
        message = parse(payload);
        body = await answer(digest, message);
      } catch (e) {
        if (!isAppError(e)) log.error({ err: e, topic }, 'MQTT provisioning failed');
        const retryAfter = isAppError(e) ? e.details?.retry_after_seconds : undefined;
        body = {
          ...(typeof retryAfter === 'number' ? { retry_after_seconds: retryAfter } : {}),
          problem: isAppError(e) ? problemOf(e.code, e.message, e.details ? { details: e.details } : {}) : problemOf('INTERNAL', 'internal error; see the server log'),
        };
      }
      const requestId = typeof message.request_id === 'string' ? message.request_id.slice(0, 200) : null;
      // server_time: a device without a real-time clock sets its clock from it before validating anything.
      await client.publishAsync(provisionResponseTopic(digest), JSON.stringify({ request_id: requestId, server_time: options.now().toISOString(), ...body }), { qos: 1 });
    })().catch((e: unknown) => log.warn({ err: e, topic }, 'could not answer a provisioning request'));
    inFlight.add(work);
    void work.finally(() => inFlight.delete(work));
  });

  return {
    async close() {
      await Promise.allSettled([...inFlight]);
      await client.endAsync();
    },
  };
}
