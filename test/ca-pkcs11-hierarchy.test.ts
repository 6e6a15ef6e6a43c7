/**
 * A certfleet root and its intermediates with every CA key in a PKCS#11 token (SoftHSM2; issue 19
 * item 5 with the hierarchy of item 1), through the operator API and a real Mosquitto running the
 * configuration `certfleet broker-config` wrote:
 *
 * - `ca create --root --key-uri` generates the root's key in the token; `ca create --parent ROOT
 *   --key-uri` generates the intermediate's key in the token and has the root's token key sign it;
 *   no private key file is written for either (CA_KEY_DIR stays without them) and both signers are
 *   PKCS#11 ones;
 * - the intermediate (its key in the token) issues device certificates; a revoked one is on the
 *   intermediate's CRL; `openssl verify -crl_check_all` with the root as the only anchor, the
 *   intermediate's CRL as served (`/pki/ca/{id}/crl.pem`) and the root's CRL as certfleet writes it
 *   for brokers (the served one, with its Issuing Distribution Point, covers the intermediates but
 *   not the root certificate itself, which OpenSSL checks too: "different CRL scope") accepts a
 *   valid device and refuses the revoked one; the broker does the same;
 * - rollover of an HSM-backed intermediate: a second intermediate whose key is generated in the
 *   token is staged, reaches the broker, is activated, a device renews over EST under it; the first
 *   is retired (forced, devices remain) and the root's CRL, signed in the token, lists it
 *   (cessationOfOperation): `-crl_check_all` then refuses the first intermediate's devices and the
 *   broker too, while the second's stay accepted.
 */
import 'reflect-metadata';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { brokerCovers, connectOnce, credentialFrom, crlsIn, estReenroll, waitForBrokerTrust, startRolloverRig, type Credential, type RolloverRig } from './support/rollover.ts';
import { run } from './support/openssl.ts';
import { SOFTHSM_MODULE, softHsm, softHsmMissing, type SoftHsm } from './support/softhsm.ts';
import { scaled } from './support/timeouts.ts';

const PIN = '135791';
const TOKEN = 'cf-hierarchy';
const TENANT = 'hsmhier';
const CAS = '/api/v1/operator/cas';
const skipped = softHsmMissing ? ` (skipped: ${softHsmMissing})` : '';

interface CaView {
  id: string;
  status: string;
  kind: string;
  parent_id: string | null;
  key: { kind: string; ref: string };
}

const serialOf = (s: string) => s.toLowerCase().replace(/^0+(?=.)/, '');

/** Every file below `dir`, recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)]));
}

describe.runIf(!softHsmMissing)(`a root and intermediates with their keys in SoftHSM2, through a real Mosquitto${skipped}`, () => {
  let hsm: SoftHsm;
  let rig: RolloverRig;
  let root: CaView;
  let i1: CaView;
  let rootCert: x509.X509Certificate;
  let i1Cert: x509.X509Certificate;
  let i1Device: Credential;
  let dir: string;
  const op = (method: string, url: string, body?: unknown) => rig.t.call(null, method, url, body, 'operator-admin');
  const file = (name: string, pem: string) => {
    const path = join(mkdtempSync(join(dir, 'f-')), name);
    writeFileSync(path, pem.trimEnd() + '\n');
    return path;
  };
  const caPem = async (id: string) => {
    await rig.t.service.crl.settled();
    const res = await rig.t.service.app.inject({ method: 'GET', url: `/pki/ca/${id}.pem` });
    expect(res.statusCode, res.body).toBe(200);
    return new x509.X509Certificate(res.body);
  };
  const crlPem = async (id: string) => {
    const res = await rig.t.service.app.inject({ method: 'GET', url: `/pki/ca/${id}/crl.pem` });
    expect(res.statusCode, res.body).toBe(200);
    return res.body.trimEnd() + '\n';
  };
  /** Polls the CA's served CRL until `ready` holds for it. */
  const crlOnceReady = async (id: string, signer: x509.X509Certificate, ready: (crl: x509.X509Crl) => boolean, what: string) => {
    const until = Date.now() + scaled(60_000);
    for (;;) {
      const crl = new x509.X509Crl(await crlPem(id));
      if (ready(crl)) {
        expect(await crl.verify({ publicKey: signer.publicKey })).toBe(true);
        return crl;
      }
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  const issue = async (deviceId: string): Promise<Credential> => {
    const reg = await rig.t.call(TENANT, 'POST', '/api/v1/customer/devices', { device_id: deviceId }, 'tenant-admin');
    expect([201, 409], reg.body).toContain(reg.status);
    const res = await rig.t.call(TENANT, 'POST', `/api/v1/customer/devices/${deviceId}/certificates/generate`, { key_type: 'ec-p256' }, 'tenant-admin');
    expect(res.status, res.body).toBe(201);
    return credentialFrom(res.json.cert_pem, res.json.private_key_pem, res.json.certificate.id);
  };
  const connect = (cred: Credential) => connectOnce({ port: rig.port, caPem: rig.combinedCa, timeoutMs: scaled(30_000) }, cred);
  /**
   * The broker's crlfile as certfleet writes it (every published CA's CRL), once `ready` holds for
   * the root's CRL in it. -crl_check_all checks the root certificate too, which the served root CRL
   * (its Issuing Distribution Point names the root's distribution point, carried only by the
   * intermediates) does not cover: "different CRL scope" at depth 2 without this file.
   */
  const rootFileCrl = async (ready: (crl: x509.X509Crl, all: x509.X509Crl[]) => boolean, what: string) => {
    const until = Date.now() + scaled(60_000);
    for (;;) {
      const text = readFileSync(rig.trustFiles.crlfile, 'utf8');
      const all = crlsIn(text);
      const crl = all.find((c) => c.issuer === rootCert.subject);
      if (crl && ready(crl, all)) {
        expect(await crl.verify({ publicKey: rootCert.publicKey })).toBe(true);
        return text.trimEnd() + '\n';
      }
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  /**
   * openssl verify -crl_check_all: the root as the only anchor, the intermediate untrusted, the
   * intermediates' and the root's CRLs as certfleet serves them (/pki/ca/{id}/crl.pem; the root's
   * covers the intermediates) and `rootCrlPem` (the root's file variant, which covers the root itself).
   */
  const checkAll = async (leafPem: string, inter: x509.X509Certificate, crlIds: string[], rootCrlPem: string) => {
    const crls = file('crls.pem', rootCrlPem + (await crlPem(root.id)) + (await Promise.all(crlIds.map(crlPem))).join(''));
    return run('openssl', [
      'verify',
      '-crl_check_all',
      '-CRLfile',
      crls,
      '-CAfile',
      file('root.pem', rootCert.toString('pem')),
      '-untrusted',
      file('inter.pem', inter.toString('pem')),
      file('leaf.pem', leafPem),
    ]);
  };
  /** The token's private key objects, by label. */
  const tokenPrivateKeys = () =>
    [...hsm.tool(TOKEN, PIN, ['--list-objects', '--type', 'privkey']).matchAll(/label:\s+(\S+)/g)].map((m) => m[1]).sort();
  /** No private key file of these CAs anywhere in the rig's folders (CA_KEY_DIR included). */
  const noKeyFiles = (ids: string[]) => {
    const files = filesUnder(rig.tmp);
    for (const id of ids) expect(files.filter((f) => f.includes(id)), `files named after ${id}`).toEqual([]);
  };

  beforeAll(async () => {
    hsm = softHsm();
    hsm.initToken(TOKEN, PIN);
    rig = await startRolloverRig('pkcs11-hierarchy', { PKCS11_MODULE_PATH: SOFTHSM_MODULE, PKCS11_PIN_FILE: hsm.pinFile(PIN) });
    dir = mkdtempSync(join(rig.tmp, 'verify-'));
  }, scaled(120_000));
  afterAll(async () => {
    await rig?.close();
  }, scaled(60_000));

  it('root and intermediate keys generated in the token; the intermediate issues; both CRLs verify with -crl_check_all; the broker agrees', async () => {
    const since = rig.broker.logs().length;
    const r = await op('POST', CAS, { kind: 'root', key_uri: `pkcs11:token=${TOKEN};object=root-ca`, common_name: 'certfleet HSM Root' });
    expect(r.status, r.body).toBe(201);
    root = r.json as CaView;
    expect(root).toMatchObject({ kind: 'root', status: 'active', key: { kind: 'pkcs11' } });
    const i = await op('POST', CAS, { parent_id: root.id, key_uri: `pkcs11:token=${TOKEN};object=int-1`, common_name: 'certfleet HSM Intermediate 1' });
    expect(i.status, i.body).toBe(201);
    i1 = i.json as CaView;
    expect(i1).toMatchObject({ kind: 'issuing', parent_id: root.id, status: 'staged', key: { kind: 'pkcs11' } });
    rootCert = await caPem(root.id);
    i1Cert = await caPem(i1.id);
    // The intermediate was signed by the root's key in the token.
    expect(i1Cert.issuer).toBe(rootCert.subject);
    expect(await i1Cert.verify({ publicKey: rootCert.publicKey, signatureOnly: true })).toBe(true);
    expect(tokenPrivateKeys()).toEqual(['int-1', 'root-ca']);
    expect(rig.t.service.cas.byId(root.id)?.ca.signer.kind).toBe('pkcs11');
    expect(rig.t.service.cas.byId(i1.id)?.ca.signer.kind).toBe('pkcs11');
    noKeyFiles([root.id, i1.id]);
    await waitForBrokerTrust(
      rig.broker,
      rig.trustFiles,
      since,
      async (trust) => (await Promise.all([rootCert, i1Cert].map((c) => brokerCovers(trust, c)))).every((c) => c.inCafile && c.crl),
      'the HSM root and intermediate with their CRLs in the broker files',
      scaled(60_000),
    );

    const activated = await op('POST', `${CAS}/${i1.id}/activate`, {});
    expect(activated.status, activated.body).toBe(200);
    i1Device = await issue('hsm-d1');
    const revokedDevice = await issue('hsm-d2');
    for (const c of [i1Device, revokedDevice]) {
      const leaf = new x509.X509Certificate(c.certPem);
      expect(leaf.issuer).toBe(i1Cert.subject);
      expect(await leaf.verify({ publicKey: i1Cert.publicKey, signatureOnly: true })).toBe(true);
    }
    expect(await connect(i1Device)).toBe('accepted');
    expect(await connect(revokedDevice)).toBe('accepted');

    const revoked = await rig.t.call(TENANT, 'POST', `/api/v1/customer/certificates/${revokedDevice.id}/revoke`, { reason: 'keyCompromise' }, 'tenant-admin');
    expect(revoked.status, revoked.body).toBe(200);
    const revokedSerial = serialOf(new x509.X509Certificate(revokedDevice.certPem).serialNumber);
    // The intermediate's CRL (signed in the token) lists the device; the root's (signed in the token) lists nothing yet.
    await crlOnceReady(i1.id, i1Cert, (crl) => crl.entries.some((e) => serialOf(e.serialNumber) === revokedSerial), "the revoked device on the intermediate's CRL");
    const rootCrl = await crlOnceReady(root.id, rootCert, () => true, "the root's CRL");
    expect(rootCrl.issuer).toBe(rootCert.subject);
    expect(rootCrl.entries).toHaveLength(0);

    // The whole crlfile goes first to openssl, which checks a certificate against the first CRL of its
    // issuer it finds there: wait until the file's intermediate CRL lists the revocation too (the
    // broker files are rewritten after the publication; a run at load 3 to 7 read the older one).
    const rootFile = await rootFileCrl(
      (_, all) => all.some((c) => c.issuer === i1Cert.subject && c.entries.some((e) => serialOf(e.serialNumber) === revokedSerial)),
      "the root's CRL and the revocation on the intermediate's CRL in the broker's crlfile",
    );
    const ok = await checkAll(i1Device.certPem, i1Cert, [i1.id], rootFile);
    expect(ok.code, ok.out).toBe(0);
    const refused = await checkAll(revokedDevice.certPem, i1Cert, [i1.id], rootFile);
    expect(refused.code, refused.out).not.toBe(0);
    expect(refused.out).toMatch(/certificate revoked/);
    // Without the broker's CRL file, -crl_check_all cannot check the root certificate itself (the test can fail).
    const noRootCrl = await checkAll(i1Device.certPem, i1Cert, [i1.id], '');
    expect(noRootCrl.code, noRootCrl.out).not.toBe(0);
    expect(noRootCrl.out).toMatch(/different CRL scope|unable to get certificate CRL/);

    const until = Date.now() + scaled(60_000);
    let outcome = 'accepted';
    while (outcome === 'accepted' && Date.now() < until) outcome = await connect(revokedDevice);
    expect(outcome).toBe('revoked');
    expect(await connect(i1Device)).toBe('accepted');
  }, scaled(240_000));

  it('rollover of an HSM-backed intermediate: I2 in the token, devices renew over EST, I1 retired and listed on the root CRL signed in the token', async () => {
    let since = rig.broker.logs().length;
    const res = await op('POST', CAS, { parent_id: root.id, key_uri: `pkcs11:token=${TOKEN};object=int-2`, common_name: 'certfleet HSM Intermediate 2' });
    expect(res.status, res.body).toBe(201);
    const i2 = res.json as CaView;
    expect(i2.key.kind).toBe('pkcs11');
    const i2Cert = await caPem(i2.id);
    expect(await i2Cert.verify({ publicKey: rootCert.publicKey, signatureOnly: true })).toBe(true);
    await waitForBrokerTrust(
      rig.broker,
      rig.trustFiles,
      since,
      async (trust) => (await Promise.all([rootCert, i1Cert, i2Cert].map((c) => brokerCovers(trust, c)))).every((c) => c.inCafile && c.crl),
      'I2 and its CRL in the broker files',
      scaled(60_000),
    );
    const activated = await op('POST', `${CAS}/${i2.id}/activate`, {});
    expect(activated.status, activated.body).toBe(200);
    expect(activated.json.previous).toBe(i1.id);

    // Renewal over EST with the I1 certificate: the new one is signed in the token by I2.
    const renewed = await estReenroll(rig.estUrl, rig.combinedCa, { id: `${TENANT}/hsm-d1`, current: i1Device, inflight: new Map() });
    const renewedCert = new x509.X509Certificate(renewed.certPem);
    expect(renewedCert.issuer).toBe(i2Cert.subject);
    expect(await renewedCert.verify({ publicKey: i2Cert.publicKey, signatureOnly: true })).toBe(true);
    expect(await connect(renewed)).toBe('accepted');
    expect(await connect(i1Device)).toBe('accepted'); // I1 retiring: still trusted

    since = rig.broker.logs().length;
    const retire = await op('POST', `${CAS}/${i1.id}/retire`, { force: true, reason: 'HSM intermediate rollover test' });
    expect(retire.status, retire.body).toBe(200);
    const i1Serial = serialOf(i1Cert.serialNumber);
    const rootCrl = await crlOnceReady(root.id, rootCert, (crl) => crl.entries.some((e) => serialOf(e.serialNumber) === i1Serial), 'I1 on the root CRL');
    expect(rootCrl.entries.find((e) => serialOf(e.serialNumber) === i1Serial)!.reason).toBe(x509.X509CrlReason.cessationOfOperation);
    await waitForBrokerTrust(
      rig.broker,
      rig.trustFiles,
      since,
      async (trust) => {
        const [a, b] = [await brokerCovers(trust, i1Cert), await brokerCovers(trust, i2Cert)];
        return !a.inCafile && b.inCafile && b.crl;
      },
      'I1 out of the broker cafile, I2 in',
      scaled(60_000),
    );
    // -crl_check_all with the root's CRL (I1 retired on it) and I1's last CRL: I1's device refused, I2's accepted.
    const rootFile = await rootFileCrl((crl) => crl.entries.some((e) => serialOf(e.serialNumber) === i1Serial), "I1 on the root's CRL in the broker's crlfile");
    const refused = await checkAll(i1Device.certPem, i1Cert, [i1.id, i2.id], rootFile);
    expect(refused.code, refused.out).not.toBe(0);
    expect(refused.out).toMatch(/certificate revoked/);
    const accepted = await checkAll(renewed.certPem, i2Cert, [i1.id, i2.id], rootFile);
    expect(accepted.code, accepted.out).toBe(0);
    expect(await connect(i1Device)).not.toBe('accepted');
    expect(await connect(renewed)).toBe('accepted');

    expect(tokenPrivateKeys()).toEqual(['int-1', 'int-2', 'root-ca']); // nothing deleted from the token
    noKeyFiles([root.id, i1.id, i2.id]);
  }, scaled(300_000));
});
