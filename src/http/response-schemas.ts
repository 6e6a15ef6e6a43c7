import { ALERT_STATUSES, CLOSE_REASONS, ALERT_TYPES } from '../domain/alert.ts';
import { CERTIFICATE_STATUSES } from '../domain/certificate.ts';
import { DEVICE_CERTIFICATE_STATUSES, DEVICE_TOTAL_CAP } from '../domain/device.ts';
import { END_ENTITY_REASON_NAMES, MAX_REASON_TEXT_LENGTH, REVOCATION_REASONS } from '../domain/revocation-reasons.ts';

/**
 * Response schemas of the JSON routes. They do two jobs: they document the answers in the
 * OpenAPI document (/docs/json, from which the console's API types are generated), and
 * Fastify serializes every answer with them (fast-json-stringify), which DROPS a property
 * the schema does not list and coerces a value to the declared type. So each schema lists
 * every field its route returns, with its exact type; `required` names the fields that are
 * always present and nullable fields are typed `[type, 'null']`.
 * test/response-schemas.test.ts checks the answers against the served document, and every
 * `TestService.call` checks that serialization dropped or changed nothing.
 *
 * The entities (`$id`) are registered once with `app.addSchema` (registerSharedSchemas) and
 * appear in the OpenAPI document as `#/components/schemas/<$id>`; routes refer to them with ref().
 */

const string = { type: 'string' } as const;
const integer = { type: 'integer' } as const;
const dateTime = { type: 'string', format: 'date-time' } as const;
const nullableString = { type: ['string', 'null'] } as const;
const nullableDateTime = { type: ['string', 'null'], format: 'date-time' } as const;

const certificateStatus = { type: 'string', enum: [...CERTIFICATE_STATUSES] } as const;

const certificateProperties = {
  id: integer,
  tenant_id: string,
  device_id: string,
  fingerprint_sha256: { type: 'string', description: 'SHA-256 of the DER, hex' },
  common_name: { type: 'string', description: 'tenant/device' },
  issuer: string,
  ca_id: { ...nullableString, description: 'the Device CA that signed it (GET /api/v1/customer/cas, /api/v1/operator/cas/{id}); null: not known (an imported certificate of no CA record)' },
  serial_number: { type: 'string', description: 'hex' },
  key_type: { type: 'string', description: 'rsa-2048, ec-p256, or what a CSR or an imported certificate carried (rsa-3072, ec-p384, ...)' },
  status: certificateStatus,
  not_before: dateTime,
  not_after: dateTime,
  revoked_at: nullableDateTime,
  revoked_reason: { ...nullableString, description: 'the reason as given (an RFC 5280 reason name or free text)' },
  scheduled_revoke_at: { ...nullableDateTime, description: 'set while this is an old certificate of a pending rotation: when it will be revoked (superseded)' },
  created_at: dateTime,
  updated_at: dateTime,
} as const;

const certificateRequired = [
  'id', 'tenant_id', 'device_id', 'fingerprint_sha256', 'common_name', 'issuer', 'ca_id', 'serial_number', 'key_type',
  'status', 'not_before', 'not_after', 'revoked_at', 'revoked_reason', 'scheduled_revoke_at', 'created_at', 'updated_at',
] as const;

/** A device certificate (without its PEM). */
const certificate = {
  $id: 'Certificate',
  type: 'object',
  required: certificateRequired,
  properties: certificateProperties,
} as const;

/** GET /certificates/{id}: the certificate with its PEM. */
const certificateWithPem = {
  $id: 'CertificateWithPem',
  type: 'object',
  required: [...certificateRequired, 'cert_pem'],
  properties: { ...certificateProperties, cert_pem: string },
} as const;

const device = {
  $id: 'Device',
  type: 'object',
  required: ['tenant_id', 'device_id', 'site_id', 'status', 'created_at', 'updated_at'],
  properties: {
    tenant_id: string,
    device_id: string,
    site_id: nullableString,
    status: string,
    created_at: dateTime,
    updated_at: dateTime,
  },
} as const;

const alert = {
  $id: 'Alert',
  type: 'object',
  required: [
    'id', 'tenant_id', 'device_id', 'alert_type', 'fingerprint', 'status', 'severity', 'summary', 'details',
    'created_at', 'updated_at', 'acknowledged_at', 'acknowledged_by', 'closed_at', 'closed_by', 'close_reason',
  ],
  properties: {
    id: integer,
    tenant_id: { type: 'string', description: '__system__ for system alerts (CRL_STALE, BROKER_RELOAD_FAILING, CA_EXPIRING)' },
    device_id: nullableString,
    alert_type: { type: 'string', description: ALERT_TYPES.join(', ') },
    fingerprint: { type: 'string', description: 'what the alert is about (one open alert per type and fingerprint)' },
    status: { type: 'string', enum: [...ALERT_STATUSES] },
    severity: integer,
    summary: string,
    details: { type: 'object', additionalProperties: true },
    created_at: dateTime,
    updated_at: dateTime,
    acknowledged_at: nullableDateTime,
    acknowledged_by: nullableString,
    closed_at: nullableDateTime,
    closed_by: nullableString,
    close_reason: { ...nullableString, description: CLOSE_REASONS.join(', ') },
  },
} as const;

/** A webhook endpoint, never with its secret. */
const webhook = {
  $id: 'Webhook',
  type: 'object',
  required: ['id', 'tenant_id', 'url', 'description', 'enabled', 'created_by', 'created_at', 'updated_at'],
  properties: {
    id: integer,
    tenant_id: string,
    url: string,
    description: nullableString,
    enabled: { type: 'boolean' },
    created_by: string,
    created_at: dateTime,
    updated_at: dateTime,
  },
} as const;

const webhookDelivery = {
  $id: 'WebhookDelivery',
  type: 'object',
  required: [
    'id', 'webhook_id', 'alert_id', 'event', 'status', 'attempts', 'next_attempt_at', 'last_attempt_at',
    'last_status_code', 'last_error', 'delivered_at', 'created_at',
  ],
  properties: {
    id: integer,
    webhook_id: integer,
    alert_id: { type: ['integer', 'null'] },
    event: { type: 'string', description: 'alert.opened, alert.escalated or alert.closed' },
    status: { type: 'string', enum: ['PENDING', 'DELIVERED', 'DEAD'] },
    attempts: integer,
    next_attempt_at: { ...nullableDateTime, description: 'while PENDING' },
    last_attempt_at: nullableDateTime,
    last_status_code: { type: ['integer', 'null'] },
    last_error: nullableString,
    delivered_at: nullableDateTime,
    created_at: dateTime,
  },
} as const;

/** The create and rotate-secret answer: the only time the secret is shown. */
const webhookWithSecret = {
  $id: 'WebhookWithSecret',
  type: 'object',
  required: ['webhook', 'secret', 'warning'],
  properties: { webhook: { $ref: 'Webhook#' }, secret: string, warning: string },
} as const;

/** A keyset page (see keysetListDescription). */
const page = <Id extends string>(id: Id, key: string, item: string) =>
  ({
    $id: id,
    type: 'object',
    required: [key, 'total', 'limit', 'next_cursor'],
    properties: {
      [key]: { type: 'array', items: { $ref: `${item}#` } },
      total: { type: 'integer', description: 'items matching the filters when this page was read' },
      limit: integer,
      next_cursor: { ...nullableString, description: 'pass as `cursor` for the next page; null on the last' },
    },
  }) as const;

const certificatePage = page('CertificatePage', 'certificates', 'Certificate');
/** A device in a list, with its certificates' state (GET /devices). */
const deviceSummary = {
  $id: 'DeviceSummary',
  type: 'object',
  required: [...device.required, 'certificate_status', 'next_expiry', 'active_certificates', 'rotation_pending'],
  properties: {
    ...device.properties,
    certificate_status: { type: 'string', enum: [...DEVICE_CERTIFICATE_STATUSES], description: 'ACTIVE if a certificate is, else EXPIRED, else REVOKED; NONE without any' },
    next_expiry: { ...dateTime, type: ['string', 'null'], description: 'the soonest not_after of its ACTIVE certificates' },
    active_certificates: integer,
    rotation_pending: { type: 'boolean' },
  },
} as const;

const devicePageBase = page('DevicePage', 'devices', 'DeviceSummary');
const devicePage = {
  ...devicePageBase,
  required: [...devicePageBase.required, 'total_capped'],
  properties: {
    ...devicePageBase.properties,
    total_capped: { type: 'boolean', description: `true: at least ${DEVICE_TOTAL_CAP} devices match these filters (a filtered total is counted up to that many)` },
  },
} as const;
const alertPage = page('AlertPage', 'alerts', 'Alert');

/** generate and csr: the new certificate, its PEM, the private key when generated here (shown once). */
const issuedCertificate = {
  $id: 'IssuedCertificate',
  type: 'object',
  required: ['certificate', 'cert_pem', 'ca_cert_pem', 'warning'],
  properties: {
    certificate: { $ref: 'Certificate#' },
    cert_pem: string,
    private_key_pem: { type: 'string', description: 'only when the key was generated here; shown this once' },
    ca_cert_pem: string,
    warning: string,
  },
} as const;

/** A rotation's new certificate, started: the old certificates stay ACTIVE until scheduled_revoke_at. */
const startedRotation = {
  $id: 'StartedRotation',
  type: 'object',
  required: ['new_certificate', 'cert_pem', 'ca_cert_pem', 'old_certificates', 'grace_period_hours', 'warning'],
  properties: {
    new_certificate: { $ref: 'Certificate#' },
    cert_pem: string,
    private_key_pem: { type: 'string', description: 'only when the key was generated here (key_type); shown this once' },
    ca_cert_pem: string,
    old_certificates: {
      type: 'array',
      items: {
        type: 'object',
        required: ['id', 'fingerprint', 'status', 'scheduled_revoke_at'],
        properties: { id: integer, fingerprint: string, status: certificateStatus, scheduled_revoke_at: dateTime },
      },
    },
    grace_period_hours: integer,
    warning: string,
  },
} as const;

/** The device's pending rotation (also `pending_rotation` of a 409 ROTATION_PENDING). */
const pendingRotation = {
  $id: 'PendingRotation',
  type: 'object',
  required: ['device_id', 'new_certificate', 'next_revoke_at', 'started_by', 'old_certificates'],
  properties: {
    device_id: string,
    new_certificate: { $ref: 'Certificate#' },
    next_revoke_at: dateTime,
    started_by: { ...nullableString, description: 'who started it (token subject, or device:<tenant>/<device>); null for older rotations' },
    old_certificates: {
      type: 'array',
      items: {
        type: 'object',
        required: ['id', 'fingerprint', 'status', 'scheduled_revoke_at', 'superseded_by', 'rotation_id', 'scheduled_at'],
        properties: {
          id: integer,
          fingerprint: string,
          status: certificateStatus,
          scheduled_revoke_at: dateTime,
          superseded_by: { type: 'integer', description: 'the new certificate' },
          rotation_id: integer,
          scheduled_at: dateTime,
        },
      },
    },
  },
} as const;

/** The RFC 5280 reasons a device certificate may be revoked with: the console's reason list comes from here. */
const revocationReason = {
  $id: 'RevocationReason',
  type: 'string',
  enum: END_ENTITY_REASON_NAMES,
  description: 'An RFC 5280 reason a device certificate may be revoked with (certificateHold, removeFromCRL, cACompromise and aACompromise are refused with 422 REVOCATION_REASON_NOT_ALLOWED).',
} as const;

/** A revocation reason in a request: one of RevocationReason (inlined: request validation has no shared schemas), or free text (the CRL entry then gives no reason). */
export const revocationReasonInput = (description: string) =>
  ({ anyOf: [{ type: 'string', enum: END_ENTITY_REASON_NAMES }, { type: 'string', maxLength: MAX_REASON_TEXT_LENGTH }], description }) as const;

/** Every shared schema, registered on the root instance (buildHttpApp) before any route. */
export const sharedSchemas = [
  certificate,
  certificateWithPem,
  certificatePage,
  device,
  deviceSummary,
  devicePage,
  alert,
  alertPage,
  webhook,
  webhookWithSecret,
  webhookDelivery,
  issuedCertificate,
  startedRotation,
  pendingRotation,
  revocationReason,
] as const;

export type SharedSchemaId = (typeof sharedSchemas)[number]['$id'];

/** A reference to a shared schema (`#/components/schemas/<id>` in the OpenAPI document). */
export const ref = (id: SharedSchemaId) => ({ $ref: `${id}#` }) as const;

/** An object of required properties. */
const object = (properties: Record<string, unknown>) => ({ type: 'object', required: Object.keys(properties), properties }) as const;

/** 204: no body. */
export const noContent = { type: 'null', description: 'No Content' } as const;

/** The `response` option of each JSON route, by area. */
export const deviceResponses = {
  registered: { 201: object({ device: ref('Device') }) },
  list: { 200: ref('DevicePage') },
  one: { 200: object({ device: ref('Device') }) },
  enrollmentToken: {
    201: object({
      enrollment_token: object({ id: integer, tenant_id: string, device_id: string, expires_at: dateTime, created_at: dateTime }),
      token: { type: 'string', description: 'the one-time EST password; shown this once' },
      username: { type: 'string', description: 'the EST username: tenant/device' },
      warning: string,
    }),
  },
} as const;

export const certificateResponses = {
  issued: { 201: ref('IssuedCertificate') },
  imported: { 201: object({ certificate: ref('Certificate'), cert_pem: string }) },
  list: { 200: ref('CertificatePage') },
  one: { 200: object({ certificate: ref('CertificateWithPem') }) },
  revoked: {
    200: object({
      certificate: ref('Certificate'),
      crl_reason: { type: 'string', enum: Object.keys(REVOCATION_REASONS), description: 'the RFC 5280 reason the CRL lists' },
    }),
  },
} as const;

export const rotationResponses = {
  started: { 201: ref('StartedRotation') },
  confirmed: {
    200: object({ device_id: string, revoked_certificates: { type: 'array', items: ref('Certificate'), description: 'the old certificates, revoked now (superseded)' } }),
  },
  cancelled: {
    200: object({
      device_id: string,
      cancelled_certificate_id: { type: 'integer', description: 'the new certificate of the cancelled rotation' },
      revoked_certificate: { anyOf: [ref('Certificate'), { type: 'null' }], description: 'that certificate, revoked; null when it was no longer ACTIVE' },
      kept_certificates: { type: 'array', items: ref('Certificate'), description: 'the old certificates, still valid' },
      active_certificates: { type: 'array', items: ref('Certificate'), description: "the device's ACTIVE certificates now" },
    }),
  },
  pending: { 200: ref('PendingRotation') },
} as const;

export const alertResponses = {
  list: { 200: ref('AlertPage') },
  one: { 200: object({ alert: ref('Alert') }) },
} as const;

export const webhookResponses = {
  created: { 201: ref('WebhookWithSecret') },
  secretRotated: { 200: ref('WebhookWithSecret') },
  list: { 200: object({ webhooks: { type: 'array', items: ref('Webhook') } }) },
  one: { 200: object({ webhook: ref('Webhook') }) },
  deleted: { 204: noContent },
  deliveries: { 200: object({ deliveries: { type: 'array', items: ref('WebhookDelivery'), description: 'newest first' } }) },
} as const;

const brokerGrantList = object({
  tenant_id: string,
  topic_prefix: { type: 'string', description: 'every filter is relative to it: tenant/<tenant>/' },
  grants: {
    type: 'array',
    items: object({ filter: { type: 'string', description: 'relative to topic_prefix' }, access: { type: 'string', enum: ['read', 'write', 'readwrite'] } }),
  },
});

export const brokerGrantResponses = {
  list: { 200: brokerGrantList },
} as const;

// ---- factory (claim) onboarding

const claimCa = object({
  id: integer,
  name: nullableString,
  subject: { type: 'string', description: "the manufacturer CA's subject" },
  fingerprint_sha256: { type: 'string', description: 'SHA-256 of the CA certificate DER, hex' },
  not_before: dateTime,
  not_after: dateTime,
  crl: {
    anyOf: [object({ this_update: dateTime, next_update: nullableDateTime, entries: integer }), { type: 'null' }],
    description: "the CA's uploaded CRL (claim certificates on it are refused); null when none was uploaded",
  },
  created_by: string,
  created_at: dateTime,
  updated_at: dateTime,
});

const provisioningPolicy = object({
  admit: object({
    cn_patterns: { type: 'array', items: string, description: '* any characters, ? one; the whole CN must match' },
    serials: { type: 'array', items: string, description: 'claim certificate serial numbers, lowercase hex' },
  }),
  device_id: object({ from: { type: 'string', enum: ['cn', 'san_dns', 'san_uri', 'san_email', 'serial'] }, pattern: { ...nullableString, description: 'the device id is its first capture group' } }),
  site_id: nullableString,
  approval_webhook: { anyOf: [object({ url: string, timeout_ms: integer }), { type: 'null' }] },
});

const provisioningPolicyView = {
  policy: provisioningPolicy,
  default: { type: 'boolean', description: 'true: the tenant never put a policy (every claim certificate of a registered claim CA, device id = CN)' },
  approval_secret_set: { type: 'boolean' },
  updated_at: nullableDateTime,
  updated_by: nullableString,
} as const;

export const claimResponses = {
  list: { 200: object({ claim_cas: { type: 'array', items: claimCa } }) },
  created: { 201: object({ claim_ca: claimCa }) },
  one: { 200: object({ claim_ca: claimCa }) },
  oneWithPem: { 200: object({ claim_ca: claimCa, ca_cert_pem: string }) },
  deleted: { 204: noContent },
  policy: { 200: object(provisioningPolicyView) },
  policyPut: {
    200: {
      type: 'object',
      required: Object.keys(provisioningPolicyView),
      properties: {
        ...provisioningPolicyView,
        approval_secret: { type: 'string', description: 'the approval webhook secret, shown this once (a new webhook URL or rotate_approval_secret)' },
        warning: string,
      },
    },
  },
} as const;

const renewalPolicy = object({
  tenant_id: string,
  validity_days: { type: 'integer', description: 'lifetime of issued device certificates when a request names none' },
  renewal_window: { type: 'number', description: 'fraction of the lifetime, at its end, in which devices renew' },
  jitter: { type: 'number', description: 'fraction of the window over which the start is spread per certificate' },
  recovery_window_days: { type: 'integer', description: 'days after notAfter in which an expired certificate may still renew (0: off)' },
  revoke_superseded: { type: 'boolean', description: 'a device renewal revokes the certificate it replaced (true) or lets it expire (false: kept off the CRL)' },
  max_recovery_window_days: integer,
});

export const renewalPolicyResponses = {
  one: { 200: renewalPolicy },
} as const;
export const tenantSettingsResponses = {
  one: {
    200: object({
      tenant_id: string,
      allow_shared_device_keys: { type: 'boolean', description: 'one key may be certified for several devices of the tenant (default false)' },
    }),
  },
} as const;
