/**
 * The pipeline's session step (src/crl/publish-crl.ts, stage 9): it closes the sessions of the
 * certificates a publication newly revoked, with the serials and CNs the publication result
 * carries (no re-reading of the CRL file after each reload), only after a successful reload, and
 * after a failed one at the next reload that succeeds. The broker file it starts from (what the
 * broker has loaded) is read once at start; an unreadable file (EACCES) is logged and counted,
 * never taken for "no file" in silence, and the stored CRL stands in for it.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { BrokerReloader } from '../src/broker/broker-reloader.ts';
import type { KickRound, RevokedSessions } from '../src/broker/revoked-sessions.ts';
import { createCrlFileSync, nodeCrlFs, type CrlFs } from '../src/crl/crl-file-sync.ts';
import { createCrlPublisher, sessionStepErrors } from '../src/crl/crl-publisher.ts';
import { createCrlPipeline, createPublishCrl, crlAuthorityFor } from '../src/crl/publish-crl.ts';
import { createStorage } from '../src/storage/repositories.ts';
import { captureLogger } from './support/capture-logger.ts';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';

describe('the session step of the CRL pipeline', () => {
  let database: TestDatabase;
  let t: TestService;

  beforeAll(async () => {
    database = await createTestDatabase('pglite');
    t = await startTestService(database, { overrides: { crl: { refreshTimer: false } } });
  });
  afterAll(async () => {
    await t?.close();
    await database?.close();
  });
  beforeEach(async () => {
    await t.service.crl.publisher!.idle();
  });

  let devices = 0;
  async function issueAndRevoke(): Promise<{ serial: string; cn: string }> {
    const device = `SESS-${++devices}`;
    expect((await t.call('acme', 'POST', '/customer/devices', { device_id: device })).status).toBe(201);
    const res = await t.call('acme', 'POST', `/customer/devices/${device}/certificates/generate`, { key_type: 'ec-p256' });
    expect(res.status).toBe(201);
    expect((await t.call('acme', 'POST', `/customer/certificates/${res.json.certificate.id}/revoke`, { reason: 'keyCompromise' })).status).toBe(200);
    await t.service.crl.publisher!.idle();
    return { serial: res.json.certificate.serial_number as string, cn: res.json.certificate.common_name as string };
  }

  /** A second publisher on the same database, with its own broker file, reloader and session spies. */
  function harness(options: { fs?: CrlFs; failReloads?: () => boolean } = {}) {
    const ca = t.service.ca.ca!;
    const authority = crlAuthorityFor(ca);
    const path = join(mkdtempSync(join(tmpdir(), 'certfleet-sessions-')), 'crl.pem');
    writeFileSync(path, readServiceFile());
    const kicked: string[][] = [];
    const sessions: RevokedSessions = {
      async kick(names) {
        kicked.push([...names]);
        return { kicked: [...names], failed: [], abandoned: [] } satisfies KickRound;
      },
      pending: () => [],
      idle: async () => undefined,
      close: async () => undefined,
    };
    const reloader: BrokerReloader = {
      configured: true,
      description: 'spy',
      async reload() {
        if (options.failReloads?.()) throw new Error('broker down');
      },
    };
    const logger = captureLogger();
    const registry = new Registry();
    const storage = createStorage(database.db);
    const file = createCrlFileSync({ path, caPublicKey: ca.publicKey, issuerNameDer: authority.issuerNameDer, clock: t.clock, reloader, logger, fs: options.fs });
    const publish = createPublishCrl({ storage, clock: t.clock, authority, settings: { validityHours: 168, distributionPointUrl: t.service.crl.distributionPointUrl }, file });
    const pipeline = createCrlPipeline({ publish, storage, authority, file, sessions, logger, sessionErrors: sessionStepErrors(registry) });
    const publisher = createCrlPublisher({ pipeline, clock: t.clock, logger, metrics: registry, staleAfterMs: 3_600_000, retryMs: 60_000 });
    return { pipeline, publisher, kicked, logger, metrics: () => registry.metrics() };
  }
  const readServiceFile = () => readFileSync(t.config.crlOutputPath);

  it('hands the newly revoked serials and CNs from the publication to the session step, after the reload', async () => {
    const h = harness();
    await h.pipeline.start();
    const { serial, cn } = await issueAndRevoke();
    const run = await h.pipeline.publish();
    expect(run.published).toBe(true);
    expect(run.file?.reloaded).toBe(true);
    expect(run.newlyRevoked).toEqual({ serials: [serial], commonNames: [cn] });
    await h.pipeline.idle();
    expect(h.kicked).toEqual([[cn]]);
    // Nothing new: nobody is kicked again.
    const again = await h.pipeline.publish();
    expect(again.newlyRevoked).toEqual({ serials: [], commonNames: [] });
    await h.pipeline.idle();
    expect(h.kicked).toEqual([[cn], []]);
  });

  it('after a failed reload, closes them at the next reload that succeeds', async () => {
    let failing = true;
    const h = harness({ failReloads: () => failing });
    await h.pipeline.start();
    const { cn } = await issueAndRevoke();
    const failed = await h.pipeline.publish();
    expect(failed.file?.reloaded).toBe(false);
    expect(failed.newlyRevoked?.commonNames).toEqual([cn]);
    await h.pipeline.idle();
    expect(h.kicked).toEqual([]);
    failing = false;
    const retried = await h.pipeline.sync(); // the publisher's reload retry: the file is current, the reload runs again
    expect(retried.file).toMatchObject({ file: 'current', reloaded: true });
    await h.pipeline.idle();
    expect(h.kicked).toEqual([[cn]]);
  });

  it('an unreadable broker file at start (EACCES) is logged and counted, and kicking goes on from the stored CRL', async () => {
    let denied = true;
    const fs: CrlFs = {
      ...nodeCrlFs,
      async readFile(path) {
        if (denied) throw Object.assign(new Error(`EACCES: permission denied, open '${path}'`), { code: 'EACCES' });
        return nodeCrlFs.readFile(path);
      },
    };
    const h = harness({ fs });
    await h.pipeline.start();
    denied = false;
    const failure = h.logger.entries.find((e) => e.event === 'broker_kick_failed');
    expect(failure).toMatchObject({ level: 'error', stage: 'baseline' });
    expect(String(failure?.err)).toContain('EACCES');
    expect(await h.metrics()).toMatch(/^certfleet_broker_session_step_errors_total\{stage="baseline"\} 1$/m);
    const { cn } = await issueAndRevoke();
    const run = await h.publisher.publishNow();
    expect(run.newlyRevoked?.commonNames).toEqual([cn]);
    await h.publisher.idle();
    expect(h.kicked).toEqual([[cn]]);
    await h.publisher.stop();
  });

  it('without a broker file at start (first run), kicks nobody: every revoked CN would disconnect rotated devices', async () => {
    const fs: CrlFs = { ...nodeCrlFs, readFile: async (path) => Promise.reject(Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' })) };
    const h = harness({ fs });
    await h.pipeline.start();
    expect(h.logger.entries.filter((e) => e.event === 'broker_kick_failed')).toEqual([]);
    await issueAndRevoke();
    const run = await h.pipeline.publish();
    expect(run.newlyRevoked).toBeNull();
    await h.pipeline.idle();
    expect(h.kicked.flat()).toEqual([]); // a round with no CN (it only retries earlier failures)
  });
});
