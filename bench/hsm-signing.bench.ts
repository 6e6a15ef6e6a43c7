/**
 * The CA key in a PKCS#11 token (SoftHSM2) next to the same kind of key in a file, in the same
 * run: raw signatures/s (serialised on one session vs a pool of sessions), EC issuance over HTTP
 * (a `certfleet api` server per key store, same client), and a large CRL (1M entries; 100k with
 * BENCH_SCALE=small) built and signed by each. Skipped, with the reason, without SoftHSM2.
 */
import { createPrivateKey, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildCrl, createRevokedEntriesEncoder } from '../src/crl/build-crl.ts';
import { createDeviceCa } from '../src/pki/device-ca.ts';
import { createDeviceCaInToken } from '../src/pki/kms/ca-certificate.ts';
import { fileKeySigner } from '../src/pki/kms/file-signer.ts';
import { crlSignerFor, type KeySigner } from '../src/pki/kms/key-signer.ts';
import { generateKeyInToken } from '../src/pki/kms/pkcs11/generate-key.ts';
import { openPkcs11Signer } from '../src/pki/kms/pkcs11/pkcs11-signer.ts';
import { SOFTHSM_MODULE, softHsm, softHsmMissing } from '../test/support/softhsm.ts';
import { emitTable, ratio, round, scaled } from './support/results.ts';
import { benchDatabase, closedLoop, fmt, startServer } from './support/server.ts';

const PIN = '1357';
const SECONDS = scaled(10, 3);
const CRL_ENTRIES = scaled(1_000_000, 100_000);

async function signRate(signer: KeySigner, seconds: number, concurrency: number): Promise<number> {
  const tbs = randomBytes(600); // about a device certificate's TBS
  const until = Date.now() + seconds * 1000;
  let n = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < until) {
        await signer.sign(tbs);
        n++;
      }
    }),
  );
  return n / ((performance.now() - start) / 1000);
}

async function signingRows() {
  const rows: (string | number)[][] = [];
  for (const keyType of ['ec-p256', 'rsa-3072'] as const) {
    const file = fileKeySigner(createPrivateKey((await createDeviceCa({ now: new Date(), keyType })).keyPem));
    const key = await generateKeyInToken({ uri: `pkcs11:token=bench;object=sign-${keyType}`, modulePath: SOFTHSM_MODULE, pin: PIN, keyType });
    const fileRate = await signRate(file, SECONDS, 32);
    rows.push([keyType, 'file (node:crypto, libuv pool)', '-', round(fileRate), '1x']);
    for (const sessions of [1, 4]) {
      const token = await openPkcs11Signer({ uri: key.uri, modulePath: SOFTHSM_MODULE, pin: PIN, maxSessions: sessions });
      const rate = await signRate(token, SECONDS, 32);
      await token.close();
      rows.push([keyType, 'SoftHSM2 (pkcs11js)', sessions, round(rate), ratio(rate, fileRate)]);
      console.log(`${keyType}: file ${fmt(fileRate)}/s, token with ${sessions} session(s) ${fmt(rate)}/s`);
    }
  }
  return rows;
}

async function issuanceRows(hsm: ReturnType<typeof softHsm>) {
  const made = await createDeviceCaInToken({ uri: 'pkcs11:token=bench;object=issuing-ca', modulePath: SOFTHSM_MODULE, pin: PIN, now: new Date(Date.now() - 3_600_000) });
  const certPath = join(hsm.dir, 'token-ca.crt');
  writeFileSync(certPath, made.certPem);
  const tokenEnv = {
    DEVICE_CA_CERT_PATH: certPath,
    DEVICE_CA_KEY_PATH: '',
    DEVICE_CA_KEY_URI: made.keyUri,
    PKCS11_MODULE_PATH: SOFTHSM_MODULE,
    PKCS11_PIN_FILE: hsm.pinFile(PIN),
    SOFTHSM2_CONF: hsm.conf,
  };
  const rows: (string | number)[][] = [];
  let fileRate = NaN;
  for (const [name, env] of [['file', {}], ['SoftHSM2', tokenEnv]] as const) {
    const db = await benchDatabase();
    const server = await startServer('api', db.url, { ISSUANCE_RATE_PER_MINUTE: '0', ...env });
    try {
      const token = server.token('bench');
      for (let d = 0; d < 20; d++) {
        await fetch(`${server.base}/api/v1/customer/devices`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ device_id: `BENCH-${d}` }),
        });
      }
      const request = (i: number) => ({
        method: 'POST' as const,
        url: `${server.base}/api/v1/customer/devices/BENCH-${i % 20}/certificates/generate`,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ key_type: 'ec-p256', validity_days: 30 }),
      });
      await closedLoop(request, 201, 1, 8); // warm-up
      const r = await closedLoop(request, 201, SECONDS, 32);
      if (name === 'file') fileRate = r.rate;
      console.log(`EC issuance, CA key in ${name}: ${fmt(r.rate)}/s (p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms, ${r.errors} errors)`);
      rows.push([name, round(r.rate), round(r.p50), round(r.p99), r.errors, ratio(r.rate, fileRate)]);
    } finally {
      await server.stop();
      await db.drop();
    }
  }
  return rows;
}

async function crlRows() {
  const enc = createRevokedEntriesEncoder();
  const start = Date.now() - 30 * 86_400_000;
  for (let i = 0; i < CRL_ENTRIES; i++) enc.add({ serialHex: (0x5a00000000000000000000000000n + BigInt(i) * 7919n).toString(16), revokedAt: new Date(start + i * 1000), reasonCode: i % 2 });
  const revoked = enc.finish();
  const rows: (string | number)[][] = [];
  for (const keyType of ['ec-p256', 'rsa-3072'] as const) {
    const file = fileKeySigner(createPrivateKey((await createDeviceCa({ now: new Date(), keyType })).keyPem));
    const key = await generateKeyInToken({ uri: `pkcs11:token=bench;object=crl-${keyType}`, modulePath: SOFTHSM_MODULE, pin: PIN, keyType });
    const token = await openPkcs11Signer({ uri: key.uri, modulePath: SOFTHSM_MODULE, pin: PIN });
    const best: Record<string, number> = {};
    for (const [name, signer] of [['file', file], ['SoftHSM2', token]] as const) {
      best[name] = Infinity;
      for (let run = 0; run < 3; run++) {
        const now = new Date();
        const t0 = performance.now();
        buildCrl({ issuerNameDer: Buffer.from('300f310d300b06035504030c0454657374', 'hex'), authorityKeyId: Buffer.alloc(20, 1), thisUpdate: now, nextUpdate: new Date(now.getTime() + 7 * 86_400_000), crlNumber: BigInt(run + 1), revoked, signer: crlSignerFor(signer) });
        best[name] = Math.min(best[name], performance.now() - t0);
      }
    }
    await token.close();
    console.log(`${CRL_ENTRIES} entries, ${keyType}: build + sign file ${fmt(best.file)} ms, SoftHSM2 ${fmt(best.SoftHSM2)} ms`);
    rows.push([CRL_ENTRIES, keyType, round(best.file), round(best.SoftHSM2), ratio(best.SoftHSM2, best.file)]);
  }
  return rows;
}

if (softHsmMissing) {
  console.log(`hsm bench skipped: ${softHsmMissing}`);
  emitTable({ id: 'hsm', title: 'CA key in a PKCS#11 token (SoftHSM2) vs a key file', description: `skipped: ${softHsmMissing}`, columns: ['skipped'], rows: [[softHsmMissing]] });
} else {
  const hsm = softHsm();
  hsm.initToken('bench', PIN);
  emitTable({
    id: 'hsm-sign',
    title: 'CA signatures/s: key file vs SoftHSM2 token',
    description: `32 signatures in flight for ${SECONDS} s over a 600-byte TBS. file: node:crypto in libuv's thread pool. SoftHSM2: pkcs11js C_SignAsync (libuv pool), EC via CKM_ECDSA over a SHA-256 digest computed in-process, RSA via CKM_SHA256_RSA_PKCS; sessions = the pool size (1 = serialised signing).`,
    columns: ['key', 'key store', 'sessions', 'signatures/s', 'vs file'],
    rows: await signingRows(),
  });
  emitTable({
    id: 'hsm-issuance',
    title: 'EC issuance over HTTP: CA key file vs SoftHSM2 token',
    description: `\`certfleet api\` on Postgres, 32 requests in flight for ${SECONDS} s, POST .../certificates/generate (ec-p256: server-side device key, signature, storage, audit). EC P-256 CA key in a file, then in SoftHSM2 (PKCS11_SESSIONS=4, the default).`,
    columns: ['CA key in', 'certs/s', 'p50 ms', 'p99 ms', 'errors', 'vs file'],
    rows: await issuanceRows(hsm),
  });
  emitTable({
    id: 'hsm-crl',
    title: 'CRL build + sign: CA key file vs SoftHSM2 token',
    description: 'The pure CRL builder over pre-encoded entries (build + sign only, best of 3); EC signs a digest computed in-process, RSA has SoftHSM2 hash the whole TBS (CKM_SHA256_RSA_PKCS).',
    columns: ['entries', 'CA key', 'file ms', 'SoftHSM2 ms', 'SoftHSM2 / file'],
    rows: await crlRows(),
  });
}
