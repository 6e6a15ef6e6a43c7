/**
 * Cold publication (not a test), real Postgres: `certfleet worker --once` as a whole process (the
 * compiled bin/certfleet.js, as an operator runs it) over N revoked rows inserted by one
 * statement, never analyzed nor vacuumed (autovacuum off on the table), against `openssl ca
 * -gencrl` on the same entries, alternating, in the same run. Each worker run has a revocation
 * pending (a pending mark), so it builds a new CRL from every row.
 *
 *   node --import tsx bench/worker-once.bench.ts      (or npm run bench; needs `npm run build`)
 *
 * BENCH_ONCE_SIZE (default 1,000,000), BENCH_ONCE_RUNS (default 3). Reports each run's ratio
 * (worker / openssl), their min and max, the worker's own breakdown (its crl_published log line)
 * and the 1-minute load average (a shared 2-core machine).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { crlAuthorityFor } from '../src/crl/publish-crl.ts';
import { crlPemToDer, verifyCrl } from '../src/crl/verify-crl.ts';
import { reasonCodeFor } from '../src/domain/revocation-reasons.ts';
import { createDeviceCa, loadDeviceCa } from '../src/pki/device-ca.ts';
import { createDatabase } from '../src/storage/database.ts';
import { migrate } from '../src/storage/migrate.ts';
import { createPgDriver } from '../src/storage/pg-driver.ts';
import { forEachRevokedCertificate } from '../src/storage/repos/crl-repo.ts';
import { insertRevokedCertificates } from '../test/support/bulk-revoked.ts';
import { opensslIndexTime, writeOpensslCaConfig } from './support/openssl-ca.ts';
import { emitTable, round, scaled } from './support/results.ts';
import { benchDatabase } from './support/server.ts';

const SIZE = Number(process.env.BENCH_ONCE_SIZE ?? scaled(1_000_000, 30_000));
const RUNS = Number(process.env.BENCH_ONCE_RUNS ?? 3);
const BIN = join(import.meta.dirname, '..', 'bin', 'certfleet.js');
const OPENSSL_REASON: Record<number, string> = { 1: 'keyCompromise', 2: 'CACompromise', 3: 'affiliationChanged', 4: 'superseded', 5: 'cessationOfOperation', 6: 'certificateHold' };

if (!existsSync(join(import.meta.dirname, '..', 'dist', 'cli', 'main.js'))) throw new Error('bench/worker-once needs the compiled CLI: npm run build:server');

const dir = mkdtempSync(join(tmpdir(), 'worker-once-'));
const database = await benchDatabase();
try {
  const caDir = join(dir, 'ca');
  spawnSync('mkdir', ['-p', caDir]);
  const created = await createDeviceCa({ now: new Date(Date.now() - 86_400_000), commonName: 'certfleet Bench Device CA' });
  writeFileSync(join(caDir, 'ca.pem'), created.certPem);
  writeFileSync(join(caDir, 'ca.key'), created.keyPem, { mode: 0o600 });
  chmodSync(join(caDir, 'ca.key'), 0o600);
  const ca = await loadDeviceCa(join(caDir, 'ca.pem'), join(caDir, 'ca.key'));
  const authority = crlAuthorityFor(ca);

  const driver = createPgDriver(database.url, { max: 2 });
  await migrate(driver);
  const admin = new pg.Client({ connectionString: database.url });
  await admin.connect();
  await admin.query('ALTER TABLE device_certificates SET (autovacuum_enabled = false)');
  const now = new Date();
  // The rows name the CA record the worker creates at its first start (ca-directory.ts), as certificates issued since CA
  // records exist do: without it the first run would also backfill a million rows (a one-time upgrade step, not publication).
  await insertRevokedCertificates(driver, { count: SIZE, now, devices: Math.min(10_000, SIZE), issuer: ca.issuerLabel, caId: `ca_${authority.issuerKeyId.slice(0, 16)}` });
  await driver.close();
  await admin.query('CHECKPOINT');

  // openssl's index.txt, the same entries (not timed)
  const index: string[] = [];
  const expiry = opensslIndexTime(now.getTime() + 365 * 86_400_000);
  const exporter = createPgDriver(database.url, { max: 1 });
  await createDatabase(exporter).asOperator((tx) =>
    forEachRevokedCertificate(tx, { issuer: ca.issuerLabel, previousThisUpdate: null }, (serial, revokedAtMs, reason) => {
      const code = reasonCodeFor(reason);
      index.push(`R\t${expiry}\t${opensslIndexTime(revokedAtMs)}${OPENSSL_REASON[code] ? `,${OPENSSL_REASON[code]}` : ''}\t${serial.toUpperCase()}\tunknown\t/CN=bulk`);
    }),
  );
  await exporter.close();
  writeFileSync(join(dir, 'index.txt'), index.join('\n') + '\n');
  index.length = 0;
  const caConfig = writeOpensslCaConfig(dir, { certPath: join(caDir, 'ca.pem'), keyPath: join(caDir, 'ca.key') });

  const env = {
    ...process.env,
    DATABASE_URL: database.url,
    CERTFLEET_DATA_DIR: join(dir, 'data'),
    DEVICE_CA_CERT_PATH: join(caDir, 'ca.pem'),
    DEVICE_CA_KEY_PATH: join(caDir, 'ca.key'),
    CRL_OUTPUT_PATH: join(dir, 'data', 'device-crl.pem'),
    LOG_LEVEL: 'info',
  };
  const rows: (string | number)[][] = [];
  const ratios: number[] = [];
  for (let run = 1; run <= RUNS; run++) {
    writeFileSync(join(dir, 'crlnumber'), '01\n');
    const oa = performance.now();
    const o = spawnSync('openssl', ['ca', '-gencrl', '-config', caConfig, '-out', join(dir, 'openssl.pem')], { encoding: 'utf8', timeout: 600_000 });
    const opensslMs = performance.now() - oa;
    if (o.status !== 0) throw new Error(`openssl ca -gencrl failed: ${o.stderr}`);

    // A revocation pending (its mark without a serial: the build reads every row).
    await admin.query('INSERT INTO crl_pending_revocations (issuer) VALUES ($1)', [ca.issuerLabel]);
    const load = os.loadavg()[0];
    const wa = performance.now();
    const w = spawnSync(process.execPath, [BIN, 'worker', '--once'], { encoding: 'utf8', env, timeout: 600_000, maxBuffer: 64 << 20 });
    const workerMs = performance.now() - wa;
    if (w.status !== 0) throw new Error(`certfleet worker --once failed (${w.status}): ${w.stderr}\n${w.stdout.slice(-2000)}`);
    const line = w.stdout
      .split('\n')
      .filter((l) => l.includes('"crl_published"'))
      .map((l) => JSON.parse(l) as Record<string, number>)[0];
    if (!line || line.entries !== SIZE) throw new Error(`worker --once did not publish ${SIZE} entries: ${JSON.stringify(line)}`);
    const file = verifyCrl(crlPemToDer(readFileSync(env.CRL_OUTPUT_PATH, 'latin1')), { caPublicKey: ca.publicKey, now: new Date() });
    if (file.entryCount !== SIZE) throw new Error(`the worker's CRL file lists ${file.entryCount} entries`);
    ratios.push(workerMs / opensslMs);
    rows.push([
      run,
      round(workerMs, 0),
      round(opensslMs, 0),
      `${round(workerMs / opensslMs, 2)}x`,
      line.ms,
      line.entries_ms,
      line.sign_ms,
      line.lint_ms,
      line.verify_ms,
      line.store_ms,
      line.file_ms,
      round(load, 1),
    ]);
    console.log(rows.at(-1)!.join(' | '));
  }
  const summary = `ratio worker / openssl over ${RUNS} runs: min ${round(Math.min(...ratios), 2)}x, max ${round(Math.max(...ratios), 2)}x (target ≤ 0.15x)`;
  console.log(summary);
  await admin.end();
  emitTable({
    id: 'worker-once-cold',
    title: `Cold publication: \`certfleet worker --once\` at ${SIZE.toLocaleString('en-US')} revoked rows, no statistics`,
    description:
      `The whole process (compiled \`bin/certfleet.js worker --once\`: start, every task once, exit) with a revocation pending, on Postgres over ${SIZE.toLocaleString('en-US')} revoked rows inserted by one statement, never analyzed nor vacuumed; ` +
      `against \`openssl ca -gencrl\` on the same entries, alternating in the same run. The breakdown is the worker's own \`crl_published\` line (publication ms: entries read and encoded, build + sign, lint, verify, store with the file written meanwhile, the file write). ${summary}.`,
    columns: ['run', 'worker --once ms', 'openssl ca -gencrl ms', 'worker / openssl', 'publication ms', 'entries ms', 'sign ms', 'lint ms', 'verify ms', 'store ms', 'file ms', 'load avg'],
    rows,
  });
} finally {
  await database.drop();
  rmSync(dir, { recursive: true, force: true });
}
