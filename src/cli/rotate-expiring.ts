import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { KEY_TYPES, type CertificateRecord, type CertificateWithPem } from '../domain/certificate.ts';
import { writeFileAtomicNew } from '../support/atomic-file.ts';
import { DAY_MS } from '../domain/clock.ts';
import { ApiError, CUSTOMER, type ApiClient } from './client/api-client.ts';
import { clientFromFlags } from './client/credentials.ts';
import { clientFlags, durationCheck, durationMs, intCheck, positiveInt, str } from './client-flags.ts';
import { graceFlag, keyTypeFlag, rotateBody, validityFlag, type RotateResponse } from './certs.ts';
import { certPath, forceFlag, keyPath, writeIssued } from './key-files.ts';
import { plural, print, relativeTime, table } from './output.ts';
import { Progress } from './progress.ts';
import { RotationJournal, JOURNAL_FILE } from './rotation-journal.ts';
import { EXIT, UsageError, type CommandSpec, type Flags } from './spec.ts';
import { unlessMissing } from '../support/missing-file.ts';

type Outcome = 'rotated' | 'recovered' | 'pending' | 'earlier' | 'failed' | 'unknown';

interface Candidate {
  deviceId: string;
  certificates: CertificateRecord[];
}

interface PendingRotation {
  new_certificate: CertificateRecord;
  old_certificates: { id: number }[];
}

const deviceUrl = (id: string) => `${CUSTOMER}/devices/${encodeURIComponent(id)}`;

/**
 * ACTIVE certificates expiring within the window, grouped by device, leaving out devices with a
 * pending rotation. Asks the server to leave those out (`rotation=none`); a server that does not
 * know the filter answers 422, and then the list is filtered here on `scheduled_revoke_at`
 * (and each device is checked again just before its rotation).
 */
async function listAll(api: ApiClient, query: Record<string, string | number | undefined>): Promise<CertificateRecord[]> {
  const certificates: CertificateRecord[] = [];
  for (let cursor: string | undefined; ; ) {
    const page = await api.get<{ certificates: CertificateRecord[]; next_cursor: string | null }>(`${CUSTOMER}/certificates`, { ...query, cursor });
    certificates.push(...page.certificates);
    if (!page.next_cursor) return certificates;
    cursor = page.next_cursor;
  }
}

async function selectExpiring(api: ApiClient, withinMs: number | null, tenant: string | undefined, now: Date, issuer?: string) {
  const query = {
    status: 'ACTIVE',
    expiring_within_days: withinMs === null ? undefined : Math.ceil(withinMs / DAY_MS),
    ca_id: issuer,
    tenant_id: tenant,
    limit: 1000,
  };
  let serverFilters = true;
  let certificates: CertificateRecord[];
  try {
    certificates = await listAll(api, { ...query, rotation: 'none' });
    // The devices the server left out for their pending rotation: counted as skipped.
    certificates.push(...(await listAll(api, { ...query, rotation: 'pending' })).map((c) => ({ ...c, scheduled_revoke_at: c.scheduled_revoke_at ?? c.not_after })));
  } catch (e) {
    if (!(e instanceof ApiError && e.code === 'VALIDATION_FAILED' && /rotation|additional/i.test(JSON.stringify(e.body)))) throw e;
    serverFilters = false;
    certificates = await listAll(api, query);
  }
  const cutoff = withinMs === null ? Number.POSITIVE_INFINITY : now.getTime() + withinMs;
  const byDevice = new Map<string, CertificateRecord[]>();
  const pendingDevices = new Set<string>();
  for (const c of certificates) {
    if (c.scheduled_revoke_at) pendingDevices.add(c.device_id);
    if (c.status !== 'ACTIVE' || Date.parse(c.not_after) > cutoff) continue;
    byDevice.set(c.device_id, [...(byDevice.get(c.device_id) ?? []), c]);
  }
  const candidates: Candidate[] = [...byDevice].filter(([d]) => !pendingDevices.has(d)).map(([deviceId, certs]) => ({ deviceId, certificates: certs }));
  return { candidates, skippedPending: [...byDevice.keys()].filter((d) => pendingDevices.has(d)), serverFilters };
}

async function pendingRotation(api: ApiClient, deviceId: string): Promise<PendingRotation | null> {
  try {
    return await api.get<PendingRotation>(`${deviceUrl(deviceId)}/certificates/rotation`);
  } catch (e) {
    if (e instanceof ApiError && e.code === 'NO_PENDING_ROTATION') return null;
    throw e;
  }
}

/**
 * Where a killed run left the pending rotation's certificate and its key (DEVICE.key/.crt, or
 * DEVICE.ID.key/.crt when those names were taken), or null. A run killed between writing the
 * key and writing the certificate left the key alone: the certificate is fetched again and
 * written beside it, so the key that did arrive is used rather than cancelled.
 */
async function filesHolding(api: ApiClient, dir: string, deviceId: string, certificate: CertificateRecord): Promise<{ key: string; cert: string } | null> {
  let issued: X509Certificate | null = null;
  let issuedPem = '';
  for (const suffix of ['', `.${certificate.id}`, ...Array.from({ length: 8 }, (_, n) => `.${certificate.id}-${n + 2}`)]) {
    const files = { key: keyPath(dir, deviceId, suffix), cert: certPath(dir, deviceId, suffix) };
    const key = await unlessMissing(readFile(files.key));
    if (!key) continue;
    const certPem = await unlessMissing(readFile(files.cert));
    try {
      if (certPem) {
        const cert = new X509Certificate(certPem);
        if (cert.fingerprint256.replaceAll(':', '').toLowerCase() === certificate.fingerprint_sha256 && cert.checkPrivateKey(createPrivateKey(key))) return files;
        continue;
      }
      if (!issued) {
        const { certificate: full } = await api.get<{ certificate: CertificateWithPem }>(`${CUSTOMER}/certificates/${certificate.id}`);
        issuedPem = full.cert_pem;
        issued = new X509Certificate(issuedPem);
      }
      if (!issued.checkPrivateKey(createPrivateKey(key))) continue;
      await writeFileAtomicNew(files.cert, issuedPem, 0o600);
      return files;
    } catch (e) {
      if (e instanceof ApiError) throw e;
      // not a key or certificate, not this one, or the name was taken meanwhile
    }
  }
  return null;
}

export interface RunOptions {
  api: ApiClient;
  out: string;
  /** null: whatever their expiry (with `issuer`). */
  withinMs: number | null;
  /** Only certificates signed by this CA record (rotate-expiring --issuer). */
  issuer?: string;
  tenant?: string;
  dryRun: boolean;
  /** Replace existing DEVICE.key / DEVICE.crt (default: write beside them). */
  force?: boolean;
  concurrency: number;
  flags: Flags;
  progress: Progress;
}

interface DeviceResult {
  device_id: string;
  outcome: Outcome;
  new_certificate_id?: number;
  key_path?: string | null;
  cert_path?: string;
  /** Existing files kept: the new key and certificate went beside them. */
  kept?: string[];
  detail?: string;
}

export async function rotateExpiring(o: RunOptions) {
  const journal = new RotationJournal(o.out, o.dryRun);
  const results: DeviceResult[] = [];
  let stopping = false;
  const stop = () => {
    if (stopping) process.exit(EXIT.INTERRUPTED); // a second Ctrl-C: the journal is consistent at every point
    stopping = true;
    o.progress.note('interrupted: finishing the requests in flight (Ctrl-C again to quit now)');
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    // 1. Requests whose answer a killed run never saw.
    for (const [deviceId, entry] of journal.devices) {
      const intent = entry.unresolved;
      if (!intent || stopping) continue;
      const pending = await pendingRotation(o.api, deviceId).catch((e: unknown) => {
        if (e instanceof ApiError && e.code === 'DEVICE_NOT_FOUND') return null;
        throw e;
      });
      if (!pending) continue; // the request never took effect: the device is selected again below
      // Ours when it replaces the certificates our intent named (they were not pending when selected).
      const ours = pending.old_certificates.some((c) => intent.old_certificate_ids.includes(c.id));
      let held: { key: string; cert: string } | null = null;
      const at = new Date().toISOString();
      if (!ours) {
        if (!o.dryRun) journal.record({ event: 'pending', device_id: deviceId, at });
        results.push({ device_id: deviceId, outcome: 'pending', detail: 'another rotation is pending' });
      } else if ((held = await filesHolding(o.api, o.out, deviceId, pending.new_certificate))) {
        const c = pending.new_certificate;
        if (!o.dryRun) journal.record({ event: 'done', device_id: deviceId, new_certificate_id: c.id, fingerprint: c.fingerprint_sha256, not_after: c.not_after, at, recovered: true });
        results.push({ device_id: deviceId, outcome: 'recovered', new_certificate_id: c.id, key_path: held.key, cert_path: held.cert, detail: 'key saved by the interrupted run' });
      } else if (!o.dryRun) {
        // Issued, but the key never reached us: that certificate can never be used. Cancel it
        // (revoked, the old ones stay valid); the device is rotated again below.
        const r = await o.api.post<{ cancelled_certificate_id: number }>(`${deviceUrl(deviceId)}/certificates/rotate/cancel`, { reason: 'cessationOfOperation' });
        journal.record({ event: 'cancelled', device_id: deviceId, cancelled_certificate_id: r.cancelled_certificate_id, at });
        o.progress.note(`${deviceId}: the interrupted run's certificate ${r.cancelled_certificate_id} was issued but its key never arrived: cancelled, rotating again`);
      }
    }

    // 2. What expires within the window.
    const now = new Date();
    const selection = await selectExpiring(o.api, o.withinMs, o.tenant, now, o.issuer);
    const handled = new Set(results.map((r) => r.device_id));
    for (const d of selection.skippedPending) if (!handled.has(d)) results.push({ device_id: d, outcome: 'pending', detail: 'a rotation is already pending' });
    for (const r of results) handled.add(r.device_id);
    const todo: Candidate[] = [];
    for (const c of selection.candidates) {
      if (handled.has(c.deviceId)) continue;
      if (c.certificates.some((cert) => journal.devices.get(c.deviceId)?.rotatedOldIds.has(cert.id))) {
        results.push({ device_id: c.deviceId, outcome: 'earlier', detail: 'rotated by an earlier run (journal); its rotation was cancelled or is still pending' });
      } else todo.push(c);
    }
    if (o.dryRun) return { results, todo, serverFilters: selection.serverFilters, interrupted: false, notAttempted: 0 };

    // 3. Rotate, N at a time.
    o.progress.start(todo.length);
    const queue = [...todo];
    const rotateOne = async (c: Candidate): Promise<DeviceResult> => {
      if (!selection.serverFilters && (await pendingRotation(o.api, c.deviceId))) {
        journal.record({ event: 'pending', device_id: c.deviceId, at: new Date().toISOString() });
        return { device_id: c.deviceId, outcome: 'pending', detail: 'a rotation is already pending' };
      }
      journal.record({ event: 'intent', device_id: c.deviceId, old_certificate_ids: c.certificates.map((x) => x.id), at: new Date().toISOString() });
      let r: RotateResponse;
      try {
        const keyType = KEY_TYPES.find((k) => k === c.certificates[0].key_type);
        r = await o.api.post<RotateResponse>(`${deviceUrl(c.deviceId)}/certificates/rotate`, rotateBody({ 'key-type': keyType, ...o.flags }));
      } catch (e) {
        const at = new Date().toISOString();
        if (e instanceof ApiError && e.status === 409 && e.code === 'ROTATION_PENDING') {
          journal.record({ event: 'pending', device_id: c.deviceId, at });
          return { device_id: c.deviceId, outcome: 'pending', detail: 'a rotation is already pending' };
        }
        if (e instanceof ApiError && e.status < 500) {
          journal.record({ event: 'failed', device_id: c.deviceId, code: e.code, detail: e.detail, at });
          return { device_id: c.deviceId, outcome: 'failed', detail: `${e.code}: ${e.detail}` };
        }
        // No answer, or a server error: whether it took effect is unknown; the next run finds out.
        return { device_id: c.deviceId, outcome: 'unknown', detail: `${(e as Error).message} (run again to resolve)` };
      }
      const files = await writeIssued(o.out, c.deviceId, r, { certificateId: r.new_certificate.id, force: o.force });
      const n = r.new_certificate;
      journal.record({ event: 'done', device_id: c.deviceId, new_certificate_id: n.id, fingerprint: n.fingerprint_sha256, not_after: n.not_after, at: new Date().toISOString() });
      return { device_id: c.deviceId, outcome: 'rotated', new_certificate_id: n.id, key_path: files.key_path, cert_path: files.cert_path, ...(files.kept.length ? { kept: files.kept.map((k) => k.existing) } : {}) };
    };
    const worker = async () => {
      // Checks `stopping` before taking a device: one taken and then dropped would be counted nowhere.
      while (!stopping) {
        const c = queue.shift();
        if (!c) break;
        const result = await rotateOne(c);
        results.push(result);
        o.progress.tick(result.outcome, `${result.device_id}: ${result.outcome}${result.new_certificate_id ? ` → certificate ${result.new_certificate_id}` : ''}${result.detail ? ` (${result.detail})` : ''}`);
      }
    };
    await Promise.all(Array.from({ length: o.concurrency }, worker));
    o.progress.finish();
    return { results, todo, serverFilters: selection.serverFilters, interrupted: stopping, notAttempted: queue.length };
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    journal.close();
  }
}

/** Devices whose new files went beside existing ones. */
function besideNote(results: DeviceResult[], out: string): string {
  const beside = results.filter((r) => r.kept?.length).length;
  return beside ? `note: ${plural(beside, 'device')} already had DEVICE.key/.crt in ${out}: kept; the new files are DEVICE.CERT_ID.key/.crt (--json: key_path, cert_path)` : '';
}

type Counted = Outcome | 'not attempted' | 'would rotate';

/** Every selected device is in exactly one row: the rows add up to the selection. */
const OUTCOME_LABELS: [Counted, string][] = [
  ['rotated', 'rotated, key and certificate written'],
  ['recovered', 'rotated by an interrupted run, key found'],
  ['would rotate', 'would be rotated (dry run)'],
  ['pending', 'skipped: rotation already pending'],
  ['earlier', 'skipped: rotated by an earlier run'],
  ['failed', 'failed'],
  ['unknown', 'failed: no answer, run again to resolve'],
  ['not attempted', 'not attempted (interrupted)'],
];

/** Devices per outcome, and the selection they add up to. */
export function summarize(run: { results: { outcome: Outcome }[]; todo: unknown[]; notAttempted: number }, dryRun: boolean) {
  const counts = Object.fromEntries(OUTCOME_LABELS.map(([k]) => [k, 0])) as Record<Counted, number>;
  for (const r of run.results) counts[r.outcome]++;
  counts['not attempted'] = run.notAttempted;
  counts['would rotate'] = dryRun ? run.todo.length : 0;
  const selected = Object.values(counts).reduce((a, b) => a + b, 0);
  const always: Counted[] = dryRun ? ['would rotate', 'pending'] : ['rotated', 'pending', 'failed'];
  const rows = OUTCOME_LABELS.filter(([k]) => counts[k] > 0 || always.includes(k));
  const text = `${table(['outcome', 'devices'], [...rows.map(([k, label]) => [label, counts[k]]), ['selected (expiring within the window)', selected]])}`;
  return { counts, selected, text };
}

export const rotateExpiringCommand: CommandSpec = {
  summary: 'rotate every ACTIVE certificate expiring within a window (resumable; keys written to --out)',
  flags: {
    ...clientFlags,
    within: { type: 'string', value: 'DURATION', help: 'expiring within this time, e.g. 30d, 2w, 12h (required unless --issuer)', check: durationCheck },
    issuer: { type: 'string', value: 'CA_ID', help: 'only certificates signed by this CA (see certfleet ca list): moves its devices to the active CA; with or without --within' },
    tenant: { type: 'string', value: 'TENANT', help: "only this tenant (must be the token's tenant)" },
    'dry-run': { type: 'boolean', help: 'list what would be rotated, change nothing' },
    concurrency: { type: 'string', value: 'N', help: 'rotations in flight at once (default 4, at most 64)', check: intCheck(1, 64) },
    'grace-hours': graceFlag,
    'key-type': { ...keyTypeFlag, help: "ec-p256 or rsa-2048 (default: each old certificate's key type)" },
    'validity-days': { ...validityFlag, help: 'validity of the new certificates in days (1-3650, default 365)' },
    out: { type: 'string', value: 'DIR', help: 'folder for DEVICE.key and DEVICE.crt (0600), ca.crt and the journal (default ./rotated)' },
    force: forceFlag,
  },
  example: [
    'certfleet rotate-expiring --within 30d --dry-run',
    'certfleet rotate-expiring --within 30d --concurrency 8 --grace-hours 48 --out /secure/rotated',
    'certfleet rotate-expiring --issuer ca_0123456789abcdef --out /secure/rollover',
  ],
  notes: [
    'Resumable: a journal in --out records each request before it is sent and each key once written',
    '(atomically, mode 0600). Interrupted (Ctrl-C, kill) and run again with the same --out, it never',
    'rotates a device twice and keeps every key it received; a rotation whose answer was lost (the key',
    'never arrived) is cancelled and the device rotated again. One run per --out folder at a time.',
    'Exit code 1 when a device failed or got no answer, 130 when interrupted.',
  ].join('\n'),
  async run(flags) {
    const within = str(flags.within);
    const issuer = str(flags.issuer);
    if (issuer !== undefined && !/^ca_[0-9a-f]{1,32}$/.test(issuer)) throw new UsageError(`--issuer must be a CA id such as ca_0123456789abcdef (got "${issuer}"): see certfleet ca list`);
    if (!within && !issuer) throw new UsageError('--within is required (e.g. --within 30d), unless --issuer CA_ID selects the certificates');
    const withinMs = within ? (durationMs(within, 'within') ?? 0) : null;
    const concurrency = positiveInt(flags.concurrency, 'concurrency', 4, 64);
    rotateBody(flags); // checks --grace-hours, --key-type and --validity-days before anything is sent
    const out = resolve(str(flags.out) ?? 'rotated');
    const api = await clientFromFlags(flags);
    const dryRun = flags['dry-run'] === true;
    let release = () => {};
    if (!dryRun) {
      await import('node:fs/promises').then((fs) => fs.mkdir(out, { recursive: true, mode: 0o700 }));
      const { DataDirLockedError, lockDataDir } = await import('../storage/data-dir-lock.ts');
      try {
        release = lockDataDir(join(out, '.rotate-expiring.lock'), (holder) => `${out} is in use by another rotate-expiring run (process ${holder})`);
      } catch (e) {
        if (e instanceof DataDirLockedError) throw new Error(e.message);
        throw e;
      }
    }
    const progress = new Progress(flags.json ? null : process.stderr);
    try {
      const run = await rotateExpiring({ api, out, withinMs, issuer, tenant: str(flags.tenant), dryRun, force: flags.force === true, concurrency, flags, progress });
      const summary = summarize(run, dryRun);
      if (dryRun) {
        const rows = run.todo.map((c) => [c.deviceId, c.certificates.map((x) => x.id).join(','), relativeTime(c.certificates[0].not_after)]);
        const human = `${run.todo.length ? `${table(['device', 'certificates', 'expires'], rows)}\n\n` : ''}${summary.text}\n\n${plural(run.todo.length, 'device')} would be rotated, ${plural(summary.counts.pending + summary.counts.earlier, 'device')} skipped. Dry run: nothing was changed or written.`;
        print(flags, human, {
          dry_run: true,
          selected: summary.selected,
          counts: summary.counts,
          would_rotate: run.todo.map((c) => ({ device_id: c.deviceId, certificate_ids: c.certificates.map((x) => x.id), not_after: c.certificates[0].not_after })),
          results: run.results,
        });
        return EXIT.OK;
      }
      const counts = summary.counts;
      const problems = run.results.filter((r) => r.outcome === 'failed' || r.outcome === 'unknown');
      const human = [
        summary.text,
        problems.length ? `\n${table(['device', 'outcome', 'detail'], problems.map((p) => [p.device_id, p.outcome, p.detail]))}` : '',
        `\nkeys and certificates: ${out} (journal: ${join(out, JOURNAL_FILE)})`,
        besideNote(run.results, out),
        run.serverFilters ? '' : 'note: this server has no rotation filter; pending rotations were checked per device',
      ].filter(Boolean).join('\n');
      print(flags, human, { out, selected: summary.selected, counts, interrupted: run.interrupted, server_rotation_filter: run.serverFilters, results: run.results });
      if (run.interrupted) return EXIT.INTERRUPTED;
      return problems.length ? EXIT.FAILED : EXIT.OK;
    } finally {
      release();
    }
  },
};
