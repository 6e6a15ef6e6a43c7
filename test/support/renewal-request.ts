/** A signed MQTT renewal request, as a device builds it (docs/device-renewal.md). */
import { createPrivateKey, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { renewalSigningText } from '../../src/renewal/device-renewal.ts';

export function signedRenewalRequest(requestId: string, csrPem: string, current: { cert: string; key: string }, signedAt = Math.floor(Date.now() / 1000)) {
  const text = renewalSigningText(requestId, signedAt, csrPem);
  return {
    request_id: requestId,
    csr_pem: csrPem,
    cert_pem: readFileSync(current.cert, 'utf8'),
    signed_at: signedAt,
    signature: sign('sha256', Buffer.from(text), createPrivateKey(readFileSync(current.key))).toString('base64'),
  };
}
