/** Helpers of the several-CA tests: a CA, a device certificate issued by a given CA and stored as certfleet stores it, a revocation as the use case commits it. */
import { createPublicKey } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCertificateAuthority } from '../../src/pki/certificate-authority.ts';
import { createDeviceCa, deviceCaFromPem, type DeviceCa } from '../../src/pki/device-ca.ts';
import { generateDeviceKey } from '../../src/pki/keys.ts';
import type { Driver } from '../../src/storage/driver.ts';

export async function loadedCa(commonName: string): Promise<DeviceCa> {
  const pem = await createDeviceCa({ now: new Date(), commonName });
  return deviceCaFromPem(pem.certPem, pem.keyPem);
}

export interface IssuedDevice {
  cert: string;
  key: string;
  serial: string;
  pem: string;
}

/** A certificate of `ca` with `crlUrl` as CDP, stored ACTIVE (tenant/device registered); files in `dir`. */
export async function issueUnder(driver: Driver, ca: DeviceCa, crlUrl: string, tenant: string, deviceId: string, dir: string): Promise<IssuedDevice> {
  const authority = createCertificateAuthority(ca, { crlUrl });
  const key = await generateDeviceKey('ec-p256');
  const now = new Date();
  const issued = await authority.issue({
    commonName: `${tenant}/${deviceId}`,
    publicKey: { spkiDer: createPublicKey(key.privateKeyPem).export({ type: 'spki', format: 'der' }), keyType: 'ec-p256' },
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + 30 * 86_400_000),
  } as never);
  await driver.transaction(async (tx) => {
    await tx.query('INSERT INTO device_registry (tenant_id, device_id, created_at, updated_at) VALUES ($1, $2, $3, $3) ON CONFLICT DO NOTHING', [tenant, deviceId, now]);
    await tx.query(
      `INSERT INTO device_certificates (tenant_id, device_id, cert_pem, fingerprint_sha256, common_name, issuer, serial_number, key_type, status, not_before, not_after, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, 'ec-p256', 'ACTIVE', $8, $9, $10, $10)`,
      [tenant, deviceId, issued.certPem, issued.fingerprint, `${tenant}/${deviceId}`, issued.issuer, issued.serialHex, issued.notBefore, issued.notAfter, now],
    );
  });
  const cert = join(dir, `${deviceId}.crt`);
  const keyFile = join(dir, `${deviceId}.key`);
  writeFileSync(cert, issued.certPem);
  writeFileSync(keyFile, key.privateKeyPem, { mode: 0o600 });
  return { cert, key: keyFile, serial: issued.serialHex, pem: issued.certPem };
}

/** Revokes by serial as the revoke use case commits it (status, pending revocation of its CA). */
export async function revokeSerial(driver: Driver, serial: string): Promise<void> {
  await driver.transaction(async (tx) => {
    const { rows } = await tx.query<{ issuer: string }>(
      `UPDATE device_certificates SET status = 'REVOKED', revoked_at = now(), revoked_reason = 'keyCompromise' WHERE serial_number = $1 RETURNING issuer`,
      [serial],
    );
    await tx.query('INSERT INTO crl_pending_revocations (issuer) VALUES ($1)', [rows[0]!.issuer]);
  });
}
