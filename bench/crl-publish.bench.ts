/**
 * CRL publication benchmark (not a test), real Postgres: 10k, 100k and 1M revoked certificates.
 *
 *   node --import tsx bench/crl-publish.bench.ts      (or npm run bench)
 *
 * "ours" = one publication as the worker runs it (createCrlPublisher.publishNow): stream the
 * revoked rows from Postgres into the DER encoder, build + sign, verify, store in crl_state,
 * verify again, write the PEM file atomically (temp file, fsync, rename, fsync dir). It runs in
 * a child process so its peak RSS is its own; median of 3 runs (and the first run).
 * "openssl" = `openssl ca -gencrl` on the same entries (index.txt written beforehand, not
 * timed; process start, index parse, build, sign, PEM write are). "python" = the seed's
 * approach, cryptography's CertificateRevocationListBuilder (one add_revoked_certificate per
 * row, plus the same reason codes, CRL number and AKI), timed build + sign inside Python;
 * skipped past 120 s. Same EC P-256 CA for all three.
 * Then: revocation committed → new file on disk, with `certfleet serve` running on Postgres
 * over 10k revoked certificates: 20 revocations over HTTP, the file polled every millisecond.
 *
 * Each case first runs on a table never analyzed nor vacuumed (autovacuum off on it before the
 * load, checked: no statistics, no visibility map), right after the revoked rows were inserted by
 * one INSERT ... SELECT, or after certificates were revoked by one UPDATE (the plan cliff of issue
 * 9 point 5), then after VACUUM ANALYZE. A CHECKPOINT after the load keeps its 300+ MB of dirty
 * pages from being written back during the first publication (it sets no hint bit and no
 * visibility map). BENCH_CRL_SIZES / BENCH_CRL_UPDATE_SIZES (comma-separated) pick the sizes.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { Registry } from 'prom-client';
import { createCrlPipeline, createPublishCrl } from '../src/crl/publish-crl.ts';
import { crlAuthorityFor, crlDistributionPointUrl } from '../src/crl/publish-crl.ts';
import { systemClock } from '../src/domain/clock.ts';
import { createDeviceCa, loadDeviceCa } from '../src/pki/device-ca.ts';
import { crlPemToDer, verifyCrl } from '../src/crl/verify-crl.ts';
import { createDatabase } from '../src/storage/database.ts';
import { createStorage } from '../src/storage/repositories.ts';
import { migrate } from '../src/storage/migrate.ts';
import type { Driver } from '../src/storage/driver.ts';
import { createPgDriver } from '../src/storage/pg-driver.ts';
import { forEachRevokedCertificate, readCrlInfo } from '../src/storage/repos/crl-repo.ts';
import { reasonCodeFor } from '../src/domain/revocation-reasons.ts';
import { createBrokerReloader } from '../src/broker/broker-reloader.ts';
import { createCrlFileSync } from '../src/crl/crl-file-sync.ts';
import { createCrlPublisher } from '../src/crl/crl-publisher.ts';
import { insertRevokedCertificates } from '../test/support/bulk-revoked.ts';
import { writeOpensslCaConfig, opensslIndexTime } from './support/openssl-ca.ts';
import { benchDatabase, fmt, percentile, startServer } from './support/server.ts';
import { cfsslGencrlMs, crlEntryCount, hasCfssl, legacyKeyFile, pythonWithCryptography } from './support/peers.ts';
import { emitSeries, emitTable, ratio, round, scaled } from './support/results.ts';

const SIZES = scaled([10_000, 100_000, 1_000_000], [1_000, 10_000, 30_000]);
const UPDATE_SIZES = scaled([100_000], [10_000]);
const RUNS = 3;
const PYTHON_TIMEOUT_MS = 120_000;
const OPENSSL_TIMEOUT_MS = 300_000;
const BASE_URL = 'http://certfleet.bench:8080';
const OPENSSL_REASON: Record<number, string> = { 1: 'keyCompromise', 2: 'CACompromise', 3: 'affiliationChanged', 4: 'superseded', 5: 'cessationOfOperation', 6: 'certificateHold' };

interface ChildReport {
  runs: { ms: number; toFileMs: number; entriesMs: number; signMs: number; verifyMs: number; storeMs: number; fileMs: number }[];
  entries: number;
  bytes: number;
  maxRssMb: number;
}

// ---------------------------------------------------------------------------------------------
// Child: the publisher, measured in its own process
// ---------------------------------------------------------------------------------------------

async function child(databaseUrl: string, caDir: string, outPath: string): Promise<void> {
  const driver = createPgDriver(databaseUrl, { max: 2 });
  const db = createDatabase(driver);
  const ca = await loadDeviceCa(join(caDir, 'ca.pem'), join(caDir, 'ca.key'));
  const authority = crlAuthorityFor(ca);
  const lines: Record<string, unknown>[] = [];
  const logger = { debug: () => undefined, info: (o: Record<string, unknown>) => void lines.push(o), warn: () => undefined, error: (o: Record<string, unknown>) => console.error(o) };
  const storage = createStorage(db);
  const file = createCrlFileSync({ path: outPath, caPublicKey: ca.publicKey, issuerNameDer: authority.issuerNameDer, clock: systemClock, reloader: createBrokerReloader({}), logger });
  const settings = { validityHours: 168, distributionPointUrl: crlDistributionPointUrl({ publicBaseUrl: BASE_URL }) };
  const publish = createPublishCrl({ storage, clock: systemClock, authority, settings, file });
  const publisher = createCrlPublisher({
    pipeline: createCrlPipeline({ publish, storage, authority, file, sessions: null, logger }),
    clock: systemClock,
    logger,
    metrics: new Registry(),
    staleAfterMs: 3_600_000,
  });
  const report: ChildReport = { runs: [], entries: 0, bytes: 0, maxRssMb: 0 };
  for (let i = 0; i < RUNS; i++) {
    const result = await publisher.publishNow();
    const line = lines.at(-1)!;
    report.runs.push({
      ms: result.ms,
      toFileMs: result.toFileMs ?? Number.NaN,
      entriesMs: Number(line.entries_ms),
      signMs: Number(line.sign_ms),
      verifyMs: Number(line.verify_ms),
      storeMs: Number(line.store_ms),
      fileMs: Number(line.file_ms),
    });
    report.entries = result.entries ?? 0;
    report.bytes = result.bytes ?? 0;
  }
  await publisher.stop();
  await driver.close();
  report.maxRssMb = process.resourceUsage().maxRSS / 1024;
  process.stdout.write(JSON.stringify(report));
}

// ---------------------------------------------------------------------------------------------
// Parent
// ---------------------------------------------------------------------------------------------

const PY_BUILD = `
import datetime, json, sys, time
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtensionOID
ca_cert = x509.load_pem_x509_certificate(open(sys.argv[1], 'rb').read())
ca_key = serialization.load_pem_private_key(open(sys.argv[2], 'rb').read(), password=None)
rows = [line.split(' ') for line in open(sys.argv[3]).read().splitlines()]
REASONS = {1: x509.ReasonFlags.key_compromise, 2: x509.ReasonFlags.ca_compromise, 3: x509.ReasonFlags.affiliation_changed,
           4: x509.ReasonFlags.superseded, 5: x509.ReasonFlags.cessation_of_operation, 6: x509.ReasonFlags.certificate_hold}
t0 = time.perf_counter()
now = datetime.datetime.now(datetime.timezone.utc)
builder = x509.CertificateRevocationListBuilder()
builder = builder.issuer_name(ca_cert.subject)
builder = builder.last_update(now)
builder = builder.next_update(now + datetime.timedelta(days=7))
for serial, seconds, code in rows:
    revoked = x509.RevokedCertificateBuilder().serial_number(int(serial, 16)).revocation_date(
        datetime.datetime.fromtimestamp(int(seconds), datetime.timezone.utc))
    if code != '0':
        revoked = revoked.add_extension(x509.CRLReason(REASONS[int(code)]), critical=False)
    builder = builder.add_revoked_certificate(revoked.build())
ski = ca_cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_KEY_IDENTIFIER).value
builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
builder = builder.add_extension(x509.CRLNumber(1), critical=False)
crl = builder.sign(ca_key, hashes.SHA256())
pem = crl.public_bytes(serialization.Encoding.PEM)
t1 = time.perf_counter()
open(sys.argv[4], 'wb').write(pem)
print(json.dumps({'build_sign_ms': (t1 - t0) * 1000, 'entries': len(rows)}))
`;

type LoadKind = 'insert' | 'update';
const LOAD_LABEL: Record<LoadKind, string> = { insert: 'one INSERT', update: 'one UPDATE' };

/** The revoked rows in one statement: inserted as REVOKED, or inserted as ACTIVE and then revoked by one UPDATE. */
async function loadRevoked(driver: Driver, kind: LoadKind, options: { count: number; now: Date; devices: number; issuer: string }) {
  if (kind === 'insert') return insertRevokedCertificates(driver, options);
  await insertRevokedCertificates(driver, { ...options, status: 'ACTIVE' });
  const started = performance.now();
  await driver.transaction((tx) =>
    tx.query(`UPDATE device_certificates SET status = 'REVOKED', revoked_at = now(), revoked_reason = 'keyCompromise' WHERE issuer = $1`, [options.issuer]),
  );
  return { ms: performance.now() - started };
}

/** The bench measures the read with no statistics and no visibility map: refuse to go on if there are some. */
async function expectNoStatistics(admin: pg.Client) {
  const { rows } = await admin.query(
    `SELECT c.reltuples::float8 AS reltuples, c.relallvisible, (SELECT count(*)::int FROM pg_statistic WHERE starelid = c.oid) AS stats,
       s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze
     FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.relname = 'device_certificates'`,
  );
  const r = rows[0];
  if (r.reltuples !== -1 || r.relallvisible !== 0 || r.stats !== 0 || r.last_vacuum || r.last_autovacuum || r.last_analyze || r.last_autoanalyze) {
    throw new Error(`device_certificates has statistics or a visibility map before the no-statistics run: ${JSON.stringify(r)}`);
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function runChild(databaseUrl: string, caDir: string, outPath: string): ChildReport {
  const r = spawnSync(process.execPath, ['--import', 'tsx', import.meta.filename, '--child', databaseUrl, caDir, outPath], {
    encoding: 'utf8',
    maxBuffer: 16 << 20,
  });
  if (r.status !== 0) throw new Error(`publisher child failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as ChildReport;
}

export async function runCrlPublishBench(options: { sizes?: number[]; updateSizes?: number[] } = {}) {
  const sizes = options.sizes ?? SIZES;
  const dir = mkdtempSync(join(tmpdir(), 'certfleet-crl-publish-bench-'));
  const python = pythonWithCryptography();
  try {
    // One EC P-256 CA for everybody (ours, openssl ca, python).
    const caDir = join(dir, 'ca');
    const created = await createDeviceCa({ now: new Date(), commonName: 'certfleet Bench Device CA' });
    spawnSync('mkdir', ['-p', caDir]);
    writeFileSync(join(caDir, 'ca.pem'), created.certPem);
    writeFileSync(join(caDir, 'ca.key'), created.keyPem, { mode: 0o600 });
    chmodSync(join(caDir, 'ca.key'), 0o600);
    const ca = await loadDeviceCa(join(caDir, 'ca.pem'), join(caDir, 'ca.key'));
    const caConfig = writeOpensslCaConfig(dir, { certPath: join(caDir, 'ca.pem'), keyPath: join(caDir, 'ca.key') });

    console.log(`\n## CRL publication: database → verified file on disk (real Postgres, EC P-256 CA)\n`);
    console.log(`node ${process.version}, ${spawnSync('openssl', ['version'], { encoding: 'utf8' }).stdout.trim()}, python: ${python ? spawnSync(python, ['-c', 'import cryptography, sys; print(sys.version.split()[0], "cryptography", cryptography.__version__)'], { encoding: 'utf8' }).stdout.trim() : 'not found'}`);
    console.log('');
    console.log(
      '| revoked | loaded by | no statistics, no VACUUM: ours to file ms (median of 3; first run) | of which (first run): entries + sign + verify + store ‖ file | ours / openssl | no statistics: until stored too ms (median) | analyzed (VACUUM ANALYZE): ours to file ms (median of 3; first run) | of which (median run) | CRL MB | peak RSS MB | openssl ca -gencrl ms | openssl / ours (analyzed) | python build+sign ms | python / ours | load avg 1 min |',
    );
    console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');

    const rows: Record<string, unknown>[] = [];
    const table: (string | number | null)[][] = [];
    const points: Record<'ours' | 'noStats' | 'openssl' | 'python' | 'cfssl', [number, number][]> = { ours: [], noStats: [], openssl: [], python: [], cfssl: [] };
    const cases: { n: number; load: LoadKind }[] = [
      ...sizes.map((n) => ({ n, load: 'insert' as const })),
      ...(options.updateSizes ?? UPDATE_SIZES).map((n) => ({ n, load: 'update' as const })),
    ];
    for (const { n, load: loadKind } of cases) {
      const database = await benchDatabase();
      try {
        const driver = createPgDriver(database.url, { max: 2 });
        await migrate(driver);
        const admin = new pg.Client({ connectionString: database.url });
        await admin.connect();
        // No statistics and no visibility map, as right after a bulk load or a bulk revocation:
        // autovacuum is off on the table before the load, and neither ANALYZE nor VACUUM runs.
        await admin.query('ALTER TABLE device_certificates SET (autovacuum_enabled = false)');
        const now = new Date();
        const load = await loadRevoked(driver, loadKind, { count: n, now, devices: Math.min(10_000, n), issuer: ca.issuerLabel });
        await driver.close();
        await admin.query('CHECKPOINT'); // the load's write-back is not the publisher's cost (it sets no hint bit, no visibility map)
        await expectNoStatistics(admin);
        const out = join(dir, `ours-${n}.pem`);
        const loadBefore = os.loadavg()[0];
        const noStats = runChild(database.url, caDir, out);
        // The measure: database → verified file on disk (toFileMs); the CRL is stored meanwhile (ms: until both are done).
        const noStatsMs = median(noStats.runs.map((r) => r.toFileMs));
        const noStatsStoredMs = median(noStats.runs.map((r) => r.ms));
        const noStatsFirst = noStats.runs[0];
        await admin.query('VACUUM ANALYZE device_certificates');
        await admin.query('CHECKPOINT');
        await admin.end();
        const report = runChild(database.url, caDir, out);
        const oursMs = median(report.runs.map((r) => r.toFileMs));
        const mid = [...report.runs].sort((a, b) => a.toFileMs - b.toFileMs)[1] ?? report.runs[0];
        const oursCheck = verifyCrl(crlPemToDer(readFileSync(out, 'latin1')), { caPublicKey: ca.publicKey, now: new Date() });
        if (oursCheck.entryCount !== n) throw new Error(`our CRL has ${oursCheck.entryCount} entries, expected ${n}`);

        // The same entries for openssl (index.txt) and Python (serial seconds code), not timed.
        const index: string[] = [];
        const plain: string[] = [];
        const expiry = opensslIndexTime(now.getTime() + 365 * 86_400_000);
        const exporter = createPgDriver(database.url, { max: 1 });
        await createDatabase(exporter).asOperator((tx) =>
          forEachRevokedCertificate(tx, { issuer: ca.issuerLabel, previousThisUpdate: null }, (serial, revokedAtMs, reason) => {
            const code = reasonCodeFor(reason);
            const rev = opensslIndexTime(revokedAtMs) + (OPENSSL_REASON[code] ? `,${OPENSSL_REASON[code]}` : '');
            index.push(`R\t${expiry}\t${rev}\t${serial.toUpperCase()}\tunknown\t/CN=bulk`);
            plain.push(`${serial} ${Math.floor(revokedAtMs / 1000)} ${OPENSSL_REASON[code] ? code : 0}`);
          }),
        );
        await exporter.close();
        writeFileSync(join(dir, 'index.txt'), index.join('\n') + '\n');
        writeFileSync(join(dir, 'crlnumber'), '01\n');
        writeFileSync(join(dir, 'entries.txt'), plain.join('\n') + '\n');
        writeFileSync(join(dir, 'serials.txt'), plain.map((l) => l.split(' ')[0]).join('\n') + '\n');
        index.length = 0;
        plain.length = 0;

        // openssl ca -gencrl
        const oa = performance.now();
        const o = spawnSync('openssl', ['ca', '-gencrl', '-config', caConfig, '-out', join(dir, 'openssl.pem')], { encoding: 'utf8', timeout: OPENSSL_TIMEOUT_MS });
        const opensslMs = performance.now() - oa;
        if (o.status !== 0) throw new Error(`openssl ca -gencrl failed: ${o.stderr}`);
        const opensslCheck = verifyCrl(crlPemToDer(readFileSync(join(dir, 'openssl.pem'), 'latin1')), { caPublicKey: ca.publicKey, now: new Date() });
        if (opensslCheck.entryCount !== n) throw new Error(`openssl CRL has ${opensslCheck.entryCount} entries, expected ${n}`);

        // the seed's Python approach (and cfssl): once per size, on the inserted case
        let pythonCol = loadKind === 'update' ? 'not run (same as inserted)' : python ? '' : 'no python3 with cryptography';
        let pythonRatio = '-';
        if (python && loadKind === 'insert') {
          const p = spawnSync(python, ['-c', PY_BUILD, join(caDir, 'ca.pem'), join(caDir, 'ca.key'), join(dir, 'entries.txt'), join(dir, 'python.pem')], {
            encoding: 'utf8',
            timeout: PYTHON_TIMEOUT_MS,
            maxBuffer: 1 << 20,
          });
          if (p.error && (p.error as NodeJS.ErrnoException).code === 'ETIMEDOUT') {
            pythonCol = `> ${PYTHON_TIMEOUT_MS / 1000} s, stopped`;
            pythonRatio = `> ${fmt(PYTHON_TIMEOUT_MS / oursMs, 0)}x`;
          } else if (p.status !== 0) {
            pythonCol = `failed: ${p.stderr.trim().split('\n').pop()}`;
          } else {
            const pyMs = (JSON.parse(p.stdout.trim()) as { build_sign_ms: number }).build_sign_ms;
            const pyCheck = verifyCrl(crlPemToDer(readFileSync(join(dir, 'python.pem'), 'latin1')), { caPublicKey: ca.publicKey, now: new Date() });
            if (pyCheck.entryCount !== n) throw new Error(`python CRL has ${pyCheck.entryCount} entries, expected ${n}`);
            pythonCol = fmt(pyMs, 0);
            pythonRatio = `${fmt(pyMs / oursMs, 1)}x`;
          }
        }
        let cfsslMs = NaN;
        if (hasCfssl() && loadKind === 'insert') {
          cfsslMs = cfsslGencrlMs(join(dir, 'serials.txt'), { certPath: join(caDir, 'ca.pem'), keyPath: legacyKeyFile(join(caDir, 'ca.key'), 'ec') }, join(dir, 'cfssl.der'));
          const cfsslEntries = crlEntryCount(readFileSync(join(dir, 'cfssl.der')));
          if (cfsslEntries !== n) throw new Error(`cfssl CRL has ${cfsslEntries} entries, expected ${n}`);
        }
        const loadAvg = round((loadBefore + os.loadavg()[0]) / 2, 1);
        const pyMsValue = Number(pythonCol.replace(/,/g, ''));
        table.push([
          n,
          LOAD_LABEL[loadKind],
          round(noStatsMs, 0),
          round(noStatsFirst.toFileMs, 0),
          ratio(noStatsFirst.toFileMs, opensslMs),
          round(noStatsStoredMs, 0),
          round(oursMs, 0),
          round(Math.max(noStats.maxRssMb, report.maxRssMb), 0),
          round(opensslMs, 0),
          ratio(opensslMs, oursMs),
          pythonCol,
          pythonRatio,
          loadKind === 'update' ? 'not run' : hasCfssl() ? round(cfsslMs, 0) : 'cfssl not installed',
          ratio(cfsslMs, oursMs),
          loadAvg,
        ]);
        if (loadKind === 'insert') {
          points.ours.push([n, oursMs]);
          points.noStats.push([n, noStatsMs]);
          points.openssl.push([n, opensslMs]);
          if (Number.isFinite(pyMsValue)) points.python.push([n, pyMsValue]);
          if (Number.isFinite(cfsslMs)) points.cfssl.push([n, cfsslMs]);
        }
        const split = (r: ChildReport['runs'][number]) => `${[r.entriesMs, r.signMs, r.verifyMs, r.storeMs].map((x) => fmt(x, 0)).join(' + ')} ‖ ${fmt(r.fileMs, 0)}`;
        console.log(
          `| ${n.toLocaleString('en-US')} | ${LOAD_LABEL[loadKind]} | ${fmt(noStatsMs, 0)}; ${fmt(noStatsFirst.toFileMs, 0)} | ${split(noStatsFirst)} | ${fmt(noStatsFirst.toFileMs / opensslMs, 2)}x | ${fmt(noStatsStoredMs, 0)} | ${fmt(oursMs, 0)}; ${fmt(report.runs[0].toFileMs, 0)} | ${split(mid)} | ${fmt(report.bytes / 1e6, 1)} | ${fmt(Math.max(noStats.maxRssMb, report.maxRssMb), 0)} | ${fmt(opensslMs, 0)} | ${fmt(opensslMs / oursMs, 1)}x | ${pythonCol} | ${pythonRatio} | ${fmt(loadAvg, 1)} |`,
        );
        rows.push({ n, load: loadKind, noStatsMs, noStatsFirstMs: noStatsFirst.toFileMs, noStatsStoredMs, oursMs, first: report.runs[0].toFileMs, rss: report.maxRssMb, opensslMs, python: pythonCol, loadMs: load.ms, loadAvg });
      } finally {
        await database.drop();
      }
    }
    console.log(
      '\n(ours split: stream rows → encode; build + sign both variants; lint + verify both; store in crl_state ‖ file: PEM + temp file + fsync +' +
        ' rename + fsync dir, done while the database stores. "to file": the run until the file is on disk; "until stored too": until the' +
        ' transaction committed as well. python: the seed’s one-builder-per-row loop is quadratic.' +
        ` ${os.cpus().length} cores, shared: the load average is the machine's, during the case.)`,
    );
    emitTable({
      id: 'crl-publish',
      title: 'CRL from Postgres: database → verified file on disk',
      description:
        'certfleet: one publication as the worker runs it (stream the revoked rows from Postgres, encode, sign, lint and verify, store, and meanwhile write the file atomically), ' +
        'timed from the start of the run until the verified file is on disk (renamed, folder fsynced), median of 3 in a child process; "until stored" adds the wait for the database to commit the stored CRL. First right after the load, on a table never analyzed nor vacuumed (autovacuum off on it before the load: ' +
        'no statistics, no visibility map; the revoked rows inserted by one INSERT … SELECT, or certificates revoked by one UPDATE), ' +
        'then after VACUUM ANALYZE. openssl: `openssl ca -gencrl` on the same entries (index.txt written beforehand), in the same run. ' +
        'python: the seed\'s approach, `cryptography`\'s `CertificateRevocationListBuilder`, build and sign only, stopped after 120 s. ' +
        'cfssl: `cfssl gencrl` on the same serials (no reason codes, no IDP). Same EC P-256 CA for all. ' +
        `Shared machine (${os.cpus().length} cores): the last column is its 1-minute load average during the case.`,
      columns: [
        'revoked',
        'loaded by',
        'certfleet to file ms, no statistics, no VACUUM (median of 3)',
        'certfleet to file ms, no statistics, first run',
        'certfleet / openssl, no statistics, first run',
        'certfleet until stored ms, no statistics (median of 3)',
        'certfleet to file ms, analyzed',
        'certfleet peak RSS MB',
        'openssl ms',
        'openssl / certfleet',
        'python ms',
        'python / certfleet',
        'cfssl ms',
        'cfssl / certfleet',
        'load avg',
      ],
      rows: table,
      notes: [
        'Ratios are peer time / certfleet time (analyzed), above 1x certfleet is faster; except "certfleet / openssl, no statistics": certfleet time / openssl time, below 1x certfleet is faster.',
      ],
    });
    emitSeries({ chart: 'crl-build-time', tool: 'certfleet (DB → file)', points: points.ours });
    emitSeries({ chart: 'crl-build-time', tool: 'certfleet, no statistics', points: points.noStats });
    emitSeries({ chart: 'crl-build-time', tool: 'openssl ca -gencrl', points: points.openssl });
    emitSeries({ chart: 'crl-build-time', tool: 'python (seed)', points: points.python });
    emitSeries({ chart: 'crl-build-time', tool: 'cfssl gencrl', points: points.cfssl });
    const latency = await revocationToFileLatency(scaled(10_000, 1_000), scaled(20, 10));
    return { rows, latency };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Revocation committed → new CRL file on disk, on a running `certfleet serve`
// ---------------------------------------------------------------------------------------------

function request(method: string, url: string, token: string, body?: unknown): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(url, { method, headers: { authorization: `Bearer ${token}`, ...(data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {}) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: text ? JSON.parse(text) : null }));
    });
    req.on('error', reject);
    req.end(data);
  });
}

/** DER INTEGER content of a hex serial: what the CRL entry contains. */
function serialBytes(hex: string): Buffer {
  const even = hex.length % 2 ? `0${hex}` : hex;
  const b = Buffer.from(even, 'hex');
  return b[0] & 0x80 ? Buffer.concat([Buffer.from([0x02, b.length + 1, 0]), b]) : Buffer.concat([Buffer.from([0x02, b.length]), b]);
}

async function revocationToFileLatency(base = 10_000, revocations = 20) {
  const database = await benchDatabase();
  const driver = createPgDriver(database.url, { max: 1 });
  await migrate(driver);
  // startServer's CA is `certfleet init-ca`'s default (CN certfleet Device CA): the CRL lists only its certificates.
  await insertRevokedCertificates(driver, { count: base, now: new Date(), issuer: 'certfleet Device CA' });
  await driver.close();
  const server = await startServer('serve', database.url, { LOG_LEVEL: 'warn' });
  const crlPath = join(server.dataDir, 'pki', 'device-crl.pem');
  try {
    const token = server.token('bench');
    if ((await request('POST', `${server.base}/api/v1/customer/devices`, token, { device_id: 'LAT-1' })).status !== 201) throw new Error('device registration failed');
    const certs: string[][] = [];
    for (let i = 0; i < revocations; i++) {
      const r = await request('POST', `${server.base}/api/v1/customer/devices/LAT-1/certificates/generate`, token, { key_type: 'ec-p256', validity_days: 30 });
      certs.push([String(r.json.certificate.id), r.json.certificate.serial_number]);
    }
    const fromCommit: number[] = [];
    const fromRequest: number[] = [];
    for (const [id, serial] of certs) {
      await new Promise((r) => setTimeout(r, 100)); // let the previous publication settle: each revocation is a lone one
      const needle = serialBytes(serial);
      const t0 = performance.now();
      const res = await request('POST', `${server.base}/api/v1/customer/certificates/${id}/revoke`, token, { reason: 'keyCompromise' });
      const t1 = performance.now();
      if (res.status !== 200) throw new Error(`revoke failed: ${res.status}`);
      let lastIdentity = '';
      for (;;) {
        const s = statSync(crlPath, { bigint: true });
        const identity = `${s.ino}:${s.mtimeNs}:${s.size}`;
        if (identity !== lastIdentity) {
          lastIdentity = identity;
          if (crlPemToDer(readFileSync(crlPath, 'latin1')).includes(needle)) break;
        }
        if (performance.now() - t1 > 30_000) throw new Error('the CRL file did not change within 30 s');
        await new Promise((r) => setTimeout(r, 1));
      }
      const t2 = performance.now();
      fromCommit.push(t2 - t1);
      fromRequest.push(t2 - t0);
    }
    fromCommit.sort((a, b) => a - b);
    fromRequest.sort((a, b) => a - b);
    console.log(`\n## Revocation → new CRL file on disk (certfleet serve on Postgres, ${base.toLocaleString('en-US')} revoked certificates already listed, ${revocations} revocations over HTTP)\n`);
    console.log('| measured from | p50 ms | p99 ms | max ms |');
    console.log('|---|---|---|---|');
    console.log(`| revoke response (committed) | ${fmt(percentile(fromCommit, 50))} | ${fmt(percentile(fromCommit, 99))} | ${fmt(fromCommit.at(-1)!)} |`);
    console.log(`| revoke request sent | ${fmt(percentile(fromRequest, 50))} | ${fmt(percentile(fromRequest, 99))} | ${fmt(fromRequest.at(-1)!)} |`);
    emitTable({
      id: 'revocation-to-file',
      title: 'Revocation → new CRL file on disk',
      description: `\`certfleet serve\` on Postgres with ${base.toLocaleString('en-US')} revoked certificates already listed; ${revocations} revocations over HTTP, the CRL file polled every millisecond until it lists the serial. No peer: openssl, python and cfssl have no revocation service.`,
      columns: ['measured from', 'p50 ms', 'p99 ms', 'max ms'],
      rows: [
        ['revoke response (committed)', round(percentile(fromCommit, 50)), round(percentile(fromCommit, 99)), round(fromCommit.at(-1)!)],
        ['revoke request sent', round(percentile(fromRequest, 50)), round(percentile(fromRequest, 99)), round(fromRequest.at(-1)!)],
      ],
    });
    return { p50: percentile(fromCommit, 50), p99: percentile(fromCommit, 99) };
  } finally {
    await server.stop();
    await database.drop();
  }
}

if (process.argv[2] === '--child') {
  await child(process.argv[3], process.argv[4], process.argv[5]);
} else if (import.meta.url === `file://${process.argv[1]}`) {
  const list = (v: string | undefined) => (v === undefined ? undefined : v.split(',').filter(Boolean).map(Number));
  await runCrlPublishBench({ sizes: list(process.env.BENCH_CRL_SIZES), updateSizes: list(process.env.BENCH_CRL_UPDATE_SIZES) });
}
