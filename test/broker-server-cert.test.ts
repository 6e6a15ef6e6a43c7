/**
 * The broker's TLS server certificate (issue 9 point 7): at most 397 days, renewed from the same
 * server CA (its key is kept, 0600) so that devices keep their combined-ca.crt, or supplied by
 * the operator (--server-cert/--server-key/--server-ca). Checked with openssl and a real Mosquitto.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SERVER_CA_KEY_FILE } from '../src/broker/broker-files.ts';
import { MAX_SERVER_CERT_DAYS } from '../src/broker/server-pki.ts';
import { DAY_MS } from '../src/domain/clock.ts';
import { writeBrokerConfig } from '../src/broker/write-broker-config.ts';
import { startMosquitto } from './support/mosquitto.ts';
import { publishWithMosquittoPub } from './support/mqtt-clients.ts';

const execFileAsync = promisify(execFile);

let tmp: string;
let deviceCaPem: string;
let crlPath: string;
let device: { cert: string; key: string };

async function openssl(args: string[], cwd = tmp): Promise<string> {
  const { stdout } = await execFileAsync('openssl', args, { cwd });
  return stdout;
}

/** RFC 5280 4.1.2.5: the validity period includes both notBefore and notAfter (one more second). */
function lifetimeDays(certPem: string): number {
  const cert = new X509Certificate(certPem);
  return (Date.parse(cert.validTo) - Date.parse(cert.validFrom) + 1000) / DAY_MS;
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'certfleet-server-cert-'));
  await chmod(tmp, 0o755); // the broker runs as user mosquitto when started as root
  await openssl([
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt',
    '-days', '30', '-subj', '/CN=server-cert test Device CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  deviceCaPem = await readFile(path.join(tmp, 'ca.crt'), 'utf8');
  await writeFile(path.join(tmp, 'client.ext'), 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
  await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'device.key', '-out', 'device.csr', '-subj', '/CN=t1\\/dev1']);
  await openssl(['x509', '-req', '-in', 'device.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '5', '-extfile', 'client.ext', '-out', 'device.crt']);
  await chmod(path.join(tmp, 'device.key'), 0o644);
  device = { cert: path.join(tmp, 'device.crt'), key: path.join(tmp, 'device.key') };
  await mkdir(path.join(tmp, 'crl'), { mode: 0o755 });
  crlPath = path.join(tmp, 'crl', 'device-crl.pem');
  await writeFile(path.join(tmp, 'index.txt'), '');
  await writeFile(path.join(tmp, 'crlnumber'), '01\n');
  await writeFile(
    path.join(tmp, 'ca.cnf'),
    '[ca]\ndefault_ca=d\n[d]\ndatabase=./index.txt\ncrlnumber=./crlnumber\ncertificate=./ca.crt\nprivate_key=./ca.key\ndefault_md=sha256\ndefault_crl_days=7\n',
  );
  await openssl(['ca', '-config', 'ca.cnf', '-gencrl', '-out', crlPath]);
  await chmod(crlPath, 0o644);
});

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** The device of these tests (CN t1/dev1): its own topics tenant/t1/device/dev1/# in the acl_file. */
const DEVICES = [{ tenantId: 't1', deviceId: 'dev1' }];

describe('broker server certificate', () => {
  it('is valid at most 397 days, and refuses a longer validity', async () => {
    const outDir = path.join(tmp, 'short');
    const result = await writeBrokerConfig({ outDir, deviceCaCertPem: deviceCaPem, crlPath });
    const certPem = await readFile(result.files.serverCert, 'utf8');
    expect(lifetimeDays(certPem)).toBeLessThanOrEqual(MAX_SERVER_CERT_DAYS);
    expect(MAX_SERVER_CERT_DAYS).toBe(397);
    await expect(
      writeBrokerConfig({ outDir: path.join(tmp, 'too-long'), deviceCaCertPem: deviceCaPem, crlPath, serverCertDays: 398 }),
    ).rejects.toThrow(/397 days/);
  });

  it('keeps the server CA key (0600) and renews from the same CA: old combined-ca.crt keeps working with a real Mosquitto', async () => {
    const outDir = path.join(tmp, 'renew');
    const first = await writeBrokerConfig({ outDir, deviceCaCertPem: deviceCaPem, crlPath, acl: { devices: DEVICES } });
    const caKeyStat = await stat(path.join(outDir, SERVER_CA_KEY_FILE));
    expect(caKeyStat.mode & 0o077).toBe(0);
    const keptBundle = path.join(tmp, 'devices-combined-ca.crt');
    await copyFile(first.files.combinedCa, keptBundle);
    const oldCertPem = await readFile(first.files.serverCert, 'utf8');

    const renewed = await writeBrokerConfig({ outDir, deviceCaCertPem: deviceCaPem, crlPath, renewServerCertificate: true, acl: { devices: DEVICES } });
    const newCertPem = await readFile(renewed.files.serverCert, 'utf8');
    expect(new X509Certificate(newCertPem).serialNumber).not.toBe(new X509Certificate(oldCertPem).serialNumber);
    expect(await readFile(renewed.files.combinedCa, 'utf8')).toBe(await readFile(keptBundle, 'utf8'));
    expect(renewed.lines.join('\n')).toMatch(/same server CA/);
    const verified = await openssl(['verify', '-CAfile', keptBundle, '-purpose', 'sslserver', renewed.files.serverCert]);
    expect(verified).toContain('OK');

    const broker = await startMosquitto({ configDir: outDir });
    try {
      const pub = await publishWithMosquittoPub({ port: broker.port, cafile: keptBundle, ...device, topic: 'tenant/t1/device/dev1/hello', message: 'renewed', timeoutMs: 20_000 });
      expect(pub.output).toBe('');
      expect(pub.ok).toBe(true);
    } finally {
      await broker.stop();
    }
  });

  it('reissues a kept certificate that is valid longer than 397 days (made by an older version) from the kept CA', async () => {
    const outDir = path.join(tmp, 'legacy');
    await writeBrokerConfig({ outDir, deviceCaCertPem: deviceCaPem, crlPath });
    // An 825-day certificate from the same CA, as older versions wrote.
    await writeFile(path.join(outDir, 'legacy.ext'), 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n');
    await openssl(['req', '-new', '-key', 'server.key', '-subj', '/CN=localhost', '-out', 'legacy.csr'], outDir);
    await openssl(['x509', '-req', '-in', 'legacy.csr', '-CA', 'server-ca.crt', '-CAkey', SERVER_CA_KEY_FILE, '-CAcreateserial', '-days', '825', '-extfile', 'legacy.ext', '-out', 'server.crt'], outDir);
    expect(lifetimeDays(await readFile(path.join(outDir, 'server.crt'), 'utf8'))).toBeGreaterThan(800);
    const again = await writeBrokerConfig({ outDir, deviceCaCertPem: deviceCaPem, crlPath });
    expect(lifetimeDays(await readFile(again.files.serverCert, 'utf8'))).toBeLessThanOrEqual(397);
  });

  it('accepts an existing server certificate, key and CA, and refuses a key that does not match', async () => {
    const ext = path.join(tmp, 'own.ext');
    await writeFile(ext, 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n');
    await openssl([
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'own-ca.key', '-out', 'own-ca.crt',
      '-days', '90', '-subj', '/CN=operator server CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'own.key', '-out', 'own.csr', '-subj', '/CN=localhost']);
    await openssl(['x509', '-req', '-in', 'own.csr', '-CA', 'own-ca.crt', '-CAkey', 'own-ca.key', '-CAcreateserial', '-days', '60', '-extfile', ext, '-out', 'own.crt']);
    const supplied = {
      certPem: await readFile(path.join(tmp, 'own.crt'), 'utf8'),
      keyPem: await readFile(path.join(tmp, 'own.key'), 'utf8'),
      caPem: await readFile(path.join(tmp, 'own-ca.crt'), 'utf8'),
    };
    const outDir = path.join(tmp, 'supplied');
    const result = await writeBrokerConfig({ outDir, deviceCaCertPem: deviceCaPem, crlPath, serverCertificate: supplied, acl: { devices: DEVICES } });
    expect(await readFile(result.files.serverCert, 'utf8')).toBe(supplied.certPem);
    expect((await stat(result.files.serverKey)).mode & 0o007).toBe(0);
    expect(await readFile(result.files.combinedCa, 'utf8')).toContain(supplied.caPem.trim());
    await expect(stat(path.join(outDir, SERVER_CA_KEY_FILE))).rejects.toThrow();

    const broker = await startMosquitto({ configDir: outDir });
    try {
      const pub = await publishWithMosquittoPub({ port: broker.port, cafile: result.files.combinedCa, ...device, topic: 'tenant/t1/device/dev1/own', message: 'x', timeoutMs: 20_000 });
      expect(pub.ok).toBe(true);
    } finally {
      await broker.stop();
    }

    await expect(
      writeBrokerConfig({ outDir: path.join(tmp, 'mismatch'), deviceCaCertPem: deviceCaPem, crlPath, serverCertificate: { ...supplied, keyPem: await readFile(path.join(tmp, 'device.key'), 'utf8') } }),
    ).rejects.toThrow(/does not match/);
    await expect(
      writeBrokerConfig({ outDir: path.join(tmp, 'wrong-ca'), deviceCaCertPem: deviceCaPem, crlPath, serverCertificate: { ...supplied, caPem: deviceCaPem } }),
    ).rejects.toThrow(/not issued by/);
  });
});
