/**
 * Short-lived certificates as the scale answer (issue 21.6), a simulation that builds the CRLs
 * for real (not a formula): a fleet of BENCH_CRL_FLEET devices (default 1,000,000; small
 * 100,000), 1% of it revoked per month (keyCompromise, the device re-enrolled at once), every
 * device renewing when its certificate's renewal window opens (the default policy: the last
 * third, jitter 0.25: renewalSchedule's rule). Each device's
 * certificates are simulated one by one over two lifetimes before the measuring instant, so the
 * fleet is in its steady state; the CRL at that instant lists every revoked certificate that has
 * not expired. Four settings: validity 365 or 30 days, and a renewal that revokes the replaced
 * certificate (`revoke_superseded: true`, the default) or lets it expire (`false`).
 *
 * For each, the CRL is built and signed by certfleet's own builder (EC P-256 CA), parsed back and
 * verified: entries, DER bytes, build+sign ms, and OpenSSL's time to load and verify it (what a
 * broker does on every reload). Revocation → refused: with BENCH_CRL_BROKER=1 (default in a full
 * run) a real Mosquitto is measured at each distinct CRL size (bench/broker-refusal.bench.ts's
 * measurement: certfleet on Postgres, revoke call → the broker refuses the certificate).
 *
 *   node --import tsx bench/short-lived-crl.bench.ts
 */
import { spawnSync } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCrl, createRevokedEntriesEncoder } from '../src/crl/build-crl.ts';
import { verifyCrl } from '../src/crl/verify-crl.ts';
import { DEFAULT_RENEWAL_POLICY } from '../src/domain/renewal-policy.ts';
import { caIdentityFromCertificate, createCrlSigner } from '../src/pki/crl-signer.ts';
import { emitTable, round, scaled, SMALL } from './support/results.ts';
import { fmt } from './support/server.ts';

const FLEET = Number(process.env.BENCH_CRL_FLEET ?? scaled(1_000_000, 100_000));
const REVOKED_PER_MONTH = 0.01;
const BROKER = (process.env.BENCH_CRL_BROKER ?? (SMALL ? '0' : '1')) === '1';
/** CRLs larger than this are not measured on the broker (BENCH_CRL_BROKER_MAX; a shared machine may not afford 500,000 rows and reloads). */
const BROKER_MAX = Number(process.env.BENCH_CRL_BROKER_MAX ?? Infinity);
const DAY = 86_400_000;
const KEY_COMPROMISE = 1;
const SUPERSEDED = 4;

/** A deterministic [0, 1) stream (the simulation is the same every run). */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Revocation {
  serial: number;
  revokedAt: number;
  reason: number;
}

/**
 * The revoked, unexpired certificates at instant T of a fleet in its steady state. Each device
 * starts with a certificate issued at a random moment of the lifetime before T - 2V and renews at
 * the due time certfleet's renewalSchedule gives (a fingerprint-like hash per certificate for the
 * jitter); compromises arrive at REVOKED_PER_MONTH per device per 30 days (exponential gaps).
 */
function simulate(validityDays: number, revokeSuperseded: boolean): { onCrl: Revocation[]; renewals: number; compromises: number } {
  const V = validityDays * DAY;
  const T = Date.UTC(2027, 0, 1);
  const start = T - 2 * V;
  const random = rng(validityDays * 2 + (revokeSuperseded ? 1 : 0));
  const ratePerMs = REVOKED_PER_MONTH / (30 * DAY);
  const policy = DEFAULT_RENEWAL_POLICY;
  const onCrl: Revocation[] = [];
  let serial = 0;
  let renewals = 0;
  let compromises = 0;
  for (let device = 0; device < FLEET; device++) {
    let notBefore = start - random() * V;
    let nextCompromise = start - Math.log(1 - random()) / ratePerMs;
    while (notBefore < T) {
      const notAfter = notBefore + V;
      const id = serial++;
      // renewalSchedule's rule (src/domain/renewal-policy.ts), with the per-certificate hash drawn from the stream (same distribution, 20x faster than hashing).
      const window = V * policy.renewal_window;
      const due = notAfter - window + window * policy.jitter * random();
      if (nextCompromise < due && nextCompromise < T) {
        // Revoked for keyCompromise; the device is re-enrolled at once.
        compromises++;
        if (notAfter > T) onCrl.push({ serial: id, revokedAt: nextCompromise, reason: KEY_COMPROMISE });
        notBefore = nextCompromise;
        nextCompromise = nextCompromise - Math.log(1 - random()) / ratePerMs;
        continue;
      }
      if (due >= T) break; // the current certificate at T
      renewals++;
      // The device renews when its window opens and uses the new certificate at once (confirmed).
      if (revokeSuperseded && notAfter > T) onCrl.push({ serial: id, revokedAt: due, reason: SUPERSEDED });
      notBefore = due;
    }
  }
  return { onCrl, renewals, compromises };
}

const dir = mkdtempSync(join(tmpdir(), 'certfleet-short-lived-'));
function sh(cmd: string, args: string[]) {
  const r = spawnSync(cmd, args, { cwd: dir, encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r;
}

interface Row {
  validity: number;
  revokeSuperseded: boolean;
  entries: number;
  superseded: number;
  bytes: number;
  buildMs: number;
  opensslMs: number;
  refusedP50: number | null;
  refusedP99: number | null;
  brokerReloadMs: number | null;
}

try {
  sh('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '30', '-subj', '/O=Certfleet Bench/CN=Bench CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-addext', 'subjectKeyIdentifier=hash']);
  const ca = caIdentityFromCertificate(readFileSync(join(dir, 'ca.pem'), 'utf8'));
  const signer = createCrlSigner(createPrivateKey(readFileSync(join(dir, 'ca.key'))));
  const rows: Row[] = [];
  console.log(`\n## Short-lived certificates: CRL of a ${fmt(FLEET, 0)}-device fleet, ${REVOKED_PER_MONTH * 100}% revoked per month`);
  for (const validity of [365, 30]) {
    for (const revokeSuperseded of [true, false]) {
      const s0 = performance.now();
      const { onCrl, renewals, compromises } = simulate(validity, revokeSuperseded);
      const simMs = performance.now() - s0;
      onCrl.sort((a, b) => a.serial - b.serial);
      const b0 = performance.now();
      const encoder = createRevokedEntriesEncoder();
      const entry = { serialHex: '', revokedAt: new Date(0), reasonCode: 0 };
      for (const r of onCrl) {
        entry.serialHex = (0x10_0000_0000 + r.serial).toString(16);
        entry.revokedAt.setTime(r.revokedAt);
        entry.reasonCode = r.reason;
        encoder.add(entry);
      }
      const now = new Date();
      const der = buildCrl({ issuerNameDer: ca.subjectDer, authorityKeyId: ca.subjectKeyId, thisUpdate: now, nextUpdate: new Date(now.getTime() + 7 * DAY), crlNumber: 1n, revoked: encoder.finish(), signer });
      const buildMs = performance.now() - b0;
      const verified = verifyCrl(der, { caPublicKey: ca.publicKey, now });
      if (verified.entryCount !== onCrl.length) throw new Error(`the CRL has ${verified.entryCount} entries, expected ${onCrl.length}`);
      writeFileSync(join(dir, 'crl.der'), der);
      const o0 = performance.now();
      sh('openssl', ['crl', '-inform', 'DER', '-in', 'crl.der', '-CAfile', 'ca.pem', '-noout']);
      const opensslMs = performance.now() - o0;
      const superseded = onCrl.filter((r) => r.reason === SUPERSEDED).length;
      console.log(
        `validity ${validity} d, revoke_superseded ${revokeSuperseded}: ${fmt(renewals, 0)} renewals and ${fmt(compromises, 0)} compromises simulated in ${fmt(simMs / 1000)} s; ` +
          `CRL ${fmt(onCrl.length, 0)} entries (${fmt(superseded, 0)} superseded), ${fmt(der.length / 1e6, 2)} MB, build+sign ${fmt(buildMs, 0)} ms, openssl load+verify ${fmt(opensslMs, 0)} ms`,
      );
      rows.push({ validity, revokeSuperseded, entries: onCrl.length, superseded, bytes: der.length, buildMs, opensslMs, refusedP50: null, refusedP99: null, brokerReloadMs: null });
    }
  }

  if (BROKER) {
    // Revocation → refused on a real Mosquitto with a CRL of each size (one measurement per distinct size, rounded to 1,000).
    const { measureSize } = await import('./broker-refusal.bench.ts');
    const measured = new Map<number, Awaited<ReturnType<typeof measureSize>>>();
    for (const row of rows) {
      const size = Math.round(row.entries / 1000) * 1000;
      if (size > BROKER_MAX) continue;
      if (!measured.has(size)) measured.set(size, await measureSize(size));
      const m = measured.get(size)!;
      Object.assign(row, { refusedP50: m.p50, refusedP99: m.p99, brokerReloadMs: m.reloadMs });
    }
  }

  emitTable({
    id: 'short-lived-crl',
    title: `Short-lived certificates: CRL of a ${FLEET.toLocaleString('en-US')}-device fleet, 1% revoked per month`,
    description:
      `A simulation that builds the CRLs for real (bench/short-lived-crl.bench.ts): ${FLEET} devices, 1% revoked per month (keyCompromise, re-enrolled at once), every device renewing when its window opens (default policy: last third, jitter 0.25, renewalSchedule's rule), two lifetimes simulated before the instant measured (steady state). ` +
      'The CRL lists the revoked certificates not yet expired; built and signed by certfleet\'s builder (EC P-256), parsed back and verified; "openssl load" is `openssl crl -CAfile` reading and verifying it (a broker does that on every reload). ' +
      (BROKER ? 'Revocation → refused: a real Mosquitto with a CRL of that size (rounded to 1,000), revoke call over the API → the broker refuses the certificate (bench/broker-refusal.bench.ts\'s measurement, certfleet on Postgres).' : 'Revocation → refused not measured in this run (BENCH_CRL_BROKER=0); see "Revocation → broker refusal".'),
    columns: ['validity days', 'revoke_superseded', 'CRL entries', 'of which superseded', 'CRL MB (DER)', 'build+sign ms', 'openssl load ms', 'revocation → refused p50 ms', 'p99 ms', "broker's reload ms"],
    rows: rows.map((r) => [r.validity, String(r.revokeSuperseded), r.entries, r.superseded, round(r.bytes / 1e6, 2), round(r.buildMs, 0), round(r.opensslMs, 0), r.refusedP50 === null ? null : round(r.refusedP50, 0), r.refusedP99 === null ? null : round(r.refusedP99, 0), r.brokerReloadMs === null ? null : round(r.brokerReloadMs, 0)]),
    notes: [
      `365 → 30 days with revoke_superseded false: ${ratioOf(rows, 365, 30)} fewer CRL entries; revoke_superseded true keeps ~${Math.round((rows.find((r) => r.validity === 30 && r.revokeSuperseded)?.entries ?? 0) / 1000)}k entries at 30 days (every renewal lists the replaced certificate until its notAfter).`,
    ],
  });
} finally {
  rmSync(dir, { recursive: true, force: true });
}

function ratioOf(rows: Row[], a: number, b: number): string {
  const x = rows.find((r) => r.validity === a && !r.revokeSuperseded)?.entries ?? 0;
  const y = rows.find((r) => r.validity === b && !r.revokeSuperseded)?.entries ?? 0;
  return y > 0 ? `${(x / y).toFixed(1)}x` : '-';
}
