/**
 * What a broker agent (role `broker-agent`, claim `broker_node`) may do, and the operator's list:
 *
 * - `GET /pki/crl-bundle.pem[?wait=S]` with `If-None-Match: "<etag>"`: the CRL bundle, or held
 *   open up to S seconds (≤ 120) until a newer one exists (long poll), then 304.
 * - `GET /pki/ca-scopes.pem` (If-None-Match): every CA a broker trusts, each after its scope
 *   (`scope *` or `scope <tenant>`, src/broker/ca-scopes.ts): the CA scope map the agent writes
 *   beside the broker's CA file for the certfleet_acl plugin (tenant ids: not public).
 * - `POST /api/v1/broker-agent/report`: the node's status (CRL applied, enforcement check).
 * - `POST /api/v1/broker-agent/canaries`: new canary certificates for the caller's own node.
 * - `GET /api/v1/operator/broker-nodes`: every node with its lag (operator scope).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BROKER_KINDS, type BrokerFleet, type BrokerReportInput } from '../../app/broker-nodes.ts';
import type { CrlBundleSource } from '../../crl/crl-bundle.ts';
import { AppError } from '../../domain/errors.ts';
import { sha256Hex } from '../conditional-get.ts';

const nullableString = { type: ['string', 'null'] } as const;
const nullableDateTime = { type: ['string', 'null'], format: 'date-time' } as const;

export const brokerNodeSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['node', 'kind', 'crl_number', 'crl_numbers', 'applied_at', 'reported_at', 'last_check_at', 'last_check_result', 'last_check_detail', 'last_error', 'lag_seconds', 'state'],
  properties: {
    node: { type: 'string' },
    kind: { type: 'string', enum: [...BROKER_KINDS] },
    crl_number: { ...nullableString, description: 'CRL Number of the bundle the node applied (decimal; several CAs: the lowest)' },
    crl_numbers: {
      type: ['object', 'null'],
      additionalProperties: { type: 'string' },
      description: 'CRL Number applied per CA (issuer key id, hex → decimal): the new CA of a rollover shows here once the node has its CRL',
    },
    applied_at: nullableDateTime,
    reported_at: { type: 'string', format: 'date-time' },
    last_check_at: nullableDateTime,
    last_check_result: { type: ['string', 'null'], enum: ['passed', 'failed', null] },
    last_check_detail: nullableString,
    last_error: nullableString,
    lag_seconds: { type: 'integer', description: 'how far the node is behind the latest CRL (0: it applied it)' },
    state: { type: 'string', enum: ['ok', 'lagging', 'silent', 'enforcement_failed'] },
  },
} as const;

const reportBody = {
  type: 'object',
  additionalProperties: false,
  required: ['kind'],
  properties: {
    kind: { type: 'string', enum: [...BROKER_KINDS] },
    crl_number: { type: ['string', 'null'], pattern: '^[0-9]{1,20}$' },
    crl_numbers: {
      type: ['object', 'null'],
      maxProperties: 256,
      propertyNames: { pattern: '^[0-9a-fA-F]{2,128}$' },
      additionalProperties: { type: 'string', pattern: '^[0-9]{1,20}$' },
    },
    applied_at: { type: ['string', 'null'], format: 'date-time' },
    check: {
      type: ['object', 'null'],
      additionalProperties: false,
      required: ['at', 'result'],
      properties: {
        at: { type: 'string', format: 'date-time' },
        result: { type: 'string', enum: ['passed', 'failed'] },
        detail: { type: ['string', 'null'], maxLength: 2000 },
      },
    },
    error: { type: ['string', 'null'], maxLength: 2000 },
  },
} as const;

const canaryCert = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'serial_number', 'cert_pem', 'private_key_pem'],
  properties: { id: { type: 'integer' }, serial_number: { type: 'string' }, cert_pem: { type: 'string' }, private_key_pem: { type: 'string' } },
} as const;

/** The node a broker-agent request is for: its token's `broker_node` claim (checked by the scope). */
function nodeOf(request: FastifyRequest): string {
  const node = request.principal?.brokerNode;
  if (!node) throw new AppError('FORBIDDEN', 'this route needs a broker-agent token naming its node');
  return node;
}

/** Under the /pki scope of role broker-agent. `caScopes`: the CA scope map's text (null: no CA). */
export function crlBundleRoutes(bundle: CrlBundleSource | null, caScopes: () => string | null = () => null) {
  return async (app: FastifyInstance) => {
    app.get(
      '/ca-scopes.pem',
      {
        schema: {
          tags: ['broker-agent'],
          summary: "Every CA a broker trusts, each after its scope (`scope *` global, `scope <tenant>`): the certfleet_acl plugin's CA scope map",
        },
      },
      async (request, reply) => {
        const text = caScopes();
        if (!text) throw new AppError('CA_NOT_CONFIGURED', 'Device CA not configured');
        const etag = sha256Hex(text);
        const sent = /^(?:W\/)?"([0-9a-f]{64})"$/.exec(String(request.headers['if-none-match'] ?? '').trim())?.[1] ?? null;
        reply.header('etag', `"${etag}"`).header('cache-control', 'no-store');
        if (sent === etag) return reply.code(304).send();
        return reply.type('application/x-pem-file').send(text);
      },
    );
    app.get<{ Querystring: { wait?: number } }>(
      '/crl-bundle.pem',
      {
        schema: {
          tags: ['broker-agent'],
          summary: 'The CRLs of every CA a broker trusts (file variant, PEM); long poll with If-None-Match and wait',
          querystring: { type: 'object', additionalProperties: false, properties: { wait: { type: 'integer', minimum: 0, maximum: 120 } } },
        },
      },
      async (request, reply) => {
        if (!bundle) throw new AppError('CA_NOT_CONFIGURED', 'Device CA not configured');
        const sent = /^(?:W\/)?"([0-9a-f]{64})"$/.exec(String(request.headers['if-none-match'] ?? '').trim())?.[1] ?? null;
        const waitMs = (request.query.wait ?? 0) * 1000;
        let current = await bundle.latest();
        if (current && sent === current.etag && waitMs > 0) {
          const aborted = new AbortController();
          request.raw.once('close', () => aborted.abort());
          current = (await bundle.waitForChange(sent, waitMs, aborted.signal)) ?? current;
        }
        if (!current) throw new AppError('CRL_NOT_AVAILABLE', 'no CRL has been published yet; try again shortly');
        reply.header('etag', `"${current.etag}"`).header('cache-control', 'no-store');
        reply.header('x-crl-numbers', current.crls.map((c) => c.crlNumber.toString()).join(','));
        if (sent === current.etag) return reply.code(304).send();
        return reply.type('application/x-pem-file').send(current.pem);
      },
    );
  };
}

/** Under /api/v1/broker-agent (role broker-agent). */
export function brokerAgentRoutes(fleet: BrokerFleet) {
  return async (app: FastifyInstance) => {
    app.post<{ Body: BrokerReportInput }>(
      '/report',
      {
        schema: {
          tags: ['broker-agent'],
          summary: "The agent's status: CRL applied, last enforcement check (for its own node only)",
          body: reportBody,
          response: { 200: { type: 'object', additionalProperties: false, required: ['node'], properties: { node: brokerNodeSchema } } },
        },
      },
      async (request) => ({ node: await fleet.report(nodeOf(request), request.body) }),
    );
    app.post<{ Body: { serials: string[] } }>(
      '/revoked-common-names',
      {
        schema: {
          tags: ['broker-agent'],
          summary: 'The CNs of revoked certificates among serials the bundle newly lists (whose live sessions the broker closes)',
          body: {
            type: 'object',
            additionalProperties: false,
            required: ['serials'],
            properties: { serials: { type: 'array', maxItems: 5_000, items: { type: 'string', pattern: '^[0-9a-fA-F]{1,64}$' } } },
          },
          response: {
            200: {
              type: 'object',
              additionalProperties: false,
              required: ['certificates'],
              properties: {
                certificates: {
                  type: 'array',
                  items: {
                    type: 'object',
                    additionalProperties: false,
                    required: ['serial_number', 'common_name'],
                    properties: { serial_number: { type: 'string' }, common_name: { type: 'string' } },
                  },
                },
              },
            },
          },
        },
      },
      async (request) => fleet.revokedCommonNames(request.body.serials),
    );
    app.post<{ Body: { kind?: 'mosquitto' | 'rabbitmq' } | undefined }>(
      '/canaries',
      {
        schema: {
          tags: ['broker-agent'],
          summary: "New canary certificates for the caller's node: one valid, one revoked (the previous ones are revoked)",
          body: { type: ['object', 'null'], additionalProperties: false, properties: { kind: { type: 'string', enum: [...BROKER_KINDS] } } },
          response: {
            201: {
              type: 'object',
              additionalProperties: false,
              required: ['node', 'valid', 'revoked'],
              properties: { node: { type: 'string' }, valid: canaryCert, revoked: canaryCert },
            },
          },
        },
      },
      async (request, reply) => reply.code(201).send(await fleet.issueCanaries(nodeOf(request), request.body?.kind ?? 'mosquitto')),
    );
  };
}

/** Under the operator scope. */
export function operatorBrokerNodeRoutes(fleet: BrokerFleet) {
  return async (app: FastifyInstance) => {
    app.get(
      '/broker-nodes',
      {
        schema: {
          tags: ['operator'],
          summary: 'Broker nodes: CRL applied, last enforcement check, lag',
          response: {
            200: {
              type: 'object',
              additionalProperties: false,
              required: ['nodes', 'latest_crl_number'],
              properties: { nodes: { type: 'array', items: brokerNodeSchema }, latest_crl_number: nullableString },
            },
          },
        },
      },
      async () => fleet.list(),
    );
  };
}
