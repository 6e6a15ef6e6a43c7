/**
 * `certfleet broker-agent`: keeps one broker node's CRL file equal to certfleet's latest CRL
 * bundle, and proves that the broker enforces it.
 *
 *   wait for a new bundle (long poll: If-None-Match + wait, no polling period)
 *   → check it (bundle-check.ts: trusted CAs, nextUpdate, numbers never backwards)
 *   → write it atomically → reload the broker (retried until it works)
 *   → close the live sessions of newly revoked certificates (dynsec admin listener)
 *   → canary handshakes (canary-check.ts) → report to certfleet.
 *
 * It survives certfleet restarts and network loss: every failed request is retried after an
 * exponential backoff with jitter, the file keeps the last good CRL, and a refused bundle is
 * never written. The file on disk is the floor: at start the agent reads it back, so even
 * without any other state it never writes an older CRL.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { BrokerKind } from '../../app/broker-nodes.ts';
import { newlyRevokedSerials } from '../../crl/build-crl.ts';
import { keepPrevious, writeFileAtomic } from '../../support/atomic-file.ts';
import { createBackoff } from '../../support/backoff.ts';
import type { Logger } from '../../support/logger.ts';
import type { BrokerReloader } from '../broker-reloader.ts';
import type { RevokedSessions } from '../revoked-sessions.ts';
import { BundleRejectedError, checkBundle, trustedCasFromPem, type CheckedCrl, type TrustedCa } from './bundle-check.ts';
import { canaryTimeoutMs, checkEnforcement, type CanaryCheck, type CanaryPair, type CanaryTarget } from './canary-check.ts';
import { crlFileTarget, type CrlTarget } from './crl-targets.ts';
import { crlListsSerial } from './crl-serial.ts';
import { DAY_MS } from '../../domain/clock.ts';
import { isMissing, unlessMissing } from '../../support/missing-file.ts';
import { parseCaScopes, renderCaScopes } from '../ca-scopes.ts';

export interface BrokerAgentOptions {
  /** certfleet's base URL. */
  url: string;
  tokenFile: string;
  node: string;
  kind: BrokerKind;
  crlFile: string;
  /** Where the broker reads its CRLs (default: `crlFile` as one file, Mosquitto's crlfile). */
  target?: CrlTarget;
  caFile: string;
  /**
   * The CA scope map the certfleet_acl plugin reads (`<ca-file>.scopes`, src/broker/ca-scopes.ts),
   * written before the cafile from GET /pki/ca-scopes.pem. null (acl_file mode, RabbitMQ: the
   * broker cannot bind a certificate's CN to its CA's tenant): tenant-scoped CAs stay out of the cafile.
   */
  caScopesFile?: string | null;
  reloader: BrokerReloader;
  /** Closes live sessions of revoked CNs (dynsec admin); null: not configured. */
  sessions: RevokedSessions | null;
  /** The broker's device listener for the canary handshakes; null: no enforcement check. */
  canary: CanaryTarget | null;
  /** Makes the canaries' CNs known to the broker when it needs users (RabbitMQ), before a check. */
  prepareCanaries?(commonNames: string[]): Promise<void>;
  /** Where the canary certificates and keys are kept (mode 0700). */
  stateDir: string;
  logger: Logger;
  /** Long-poll wait (seconds); also the heartbeat period of the reports. Default 50. */
  waitSeconds?: number;
  /**
   * Bound on reloads of a large CRL: when the bundle last applied had at least `largeCrlBytes`
   * (default 4 MiB, about 90,000 entries), the next one is applied no sooner than
   * `largeCrlReloadIntervalMs` after it (default 10 s; 0: no bound). Mosquitto serves nobody while
   * it re-reads its crlfile; revocations arriving meanwhile are coalesced into the next reload.
   */
  largeCrlBytes?: number;
  largeCrlReloadIntervalMs?: number;
  /** How the agent waits out that bound (a seam for tests; default: a timer, ended by stop()). */
  waitOutReloadBound?(ms: number, signal: AbortSignal): Promise<void>;
  /** First retry delay after a failure (doubles up to maxRetryMs, with ±50 % jitter). Defaults 1 s and 30 s. */
  retryMs?: number;
  maxRetryMs?: number;
}

export interface BrokerAgentStatus {
  crlNumbers: Record<string, string>;
  appliedAt: Date | null;
  lastCheck: (CanaryCheck & { at: Date }) | null;
  lastError: string | null;
  applied: number;
  refused: number;
}

export interface BrokerAgent {
  /** Runs until stop(). */
  run(): Promise<void>;
  stop(): Promise<void>;
  status(): BrokerAgentStatus;
}

class HttpError extends Error {}

type TrustEntry = TrustedCa & { pem: string; tenantId?: string | null };

const jittered = (ms: number) => Math.round(ms * (0.5 + Math.random()));

export function createBrokerAgent(options: BrokerAgentOptions): BrokerAgent {
  const log = options.logger;
  const target = options.target ?? crlFileTarget(options.crlFile);
  const base = options.url.replace(/\/+$/, '');
  const waitSeconds = options.waitSeconds ?? 50;
  const backoff = createBackoff(options.retryMs ?? 1000, options.maxRetryMs ?? 30_000);
  const stopper = new AbortController();
  let running: Promise<void> | null = null;
  let cas: TrustedCa[] = [];
  const applied = new Map<string, CheckedCrl>();
  let etag: string | null = null;
  /**
   * The trust set from /pki/ca-scopes.pem (or /pki/cas.pem from a server without it): ETag, CAs in
   * certfleet's order with their PEM and scope (tenantId undefined: not told); null until fetched (or not served).
   */
  let trust: { etag: string | null; cas: TrustEntry[]; scoped: boolean } | null = null;
  const excludedLogged = new Set<string>();
  let lastApplied: { at: number; bytes: number } | null = null;
  const largeCrlBytes = options.largeCrlBytes ?? 4 * 1024 * 1024;
  const largeIntervalMs = options.largeCrlReloadIntervalMs ?? 10_000;
  let canaries: (CanaryPair & { notAfter: Date }) | null = null;
  const state: BrokerAgentStatus = { crlNumbers: {}, appliedAt: null, lastCheck: null, lastError: null, applied: 0, refused: 0 };

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      stopper.signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
    });

  async function call(method: string, route: string, init: { body?: unknown; headers?: Record<string, string>; timeoutMs?: number } = {}) {
    const token = (await readFile(options.tokenFile, 'utf8')).trim();
    const signal = AbortSignal.any([stopper.signal, AbortSignal.timeout(init.timeoutMs ?? 15_000)]);
    return fetch(`${base}${route}`, {
      method,
      signal,
      headers: {
        authorization: `Bearer ${token}`,
        ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...init.headers,
      },
      ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
    });
  }

  async function json<T>(method: string, route: string, body?: unknown): Promise<T> {
    const res = await call(method, route, { body });
    const text = await res.text();
    if (!res.ok) throw new HttpError(`${method} ${route}: HTTP ${res.status} ${text.slice(0, 300)}`);
    return JSON.parse(text) as T;
  }

  /** The CRL file on disk is the floor (expired or not, it must verify). */
  async function init() {
    cas = trustedCasFromPem(await readFile(options.caFile, 'utf8'));
    if (cas.length === 0) throw new Error(`${options.caFile} holds no CA certificate`);
    await mkdir(options.stateDir, { recursive: true, mode: 0o700 });
    try {
      const pem = await target.read();
      if (pem === null) throw new Error(`nothing at ${target.description} yet`);
      for (const crl of checkBundle(pem, cas, new Map(), null)) applied.set(crl.issuerKeyId, crl);
      state.crlNumbers = numbers();
    } catch (error) {
      log.warn({ event: 'broker_agent_no_floor', err: (error as Error).message }, 'the current CRL file gives no CRL number to start from');
    }
    canaries = await loadCanaries();
  }

  const numbers = () => Object.fromEntries([...applied].map(([k, v]) => [k, v.crlNumber.toString()]));
  const lowestNumber = () => (applied.size ? [...applied.values()].reduce((a, c) => (c.crlNumber < a ? c.crlNumber : a), [...applied.values()][0].crlNumber) : null);
  const canaryFile = (name: string) => path.join(options.stateDir, name);

  async function loadCanaries(): Promise<(CanaryPair & { notAfter: Date }) | null> {
    try {
      const [vc, vk, rc, rk] = await Promise.all(['canary-valid.crt', 'canary-valid.key', 'canary-revoked.crt', 'canary-revoked.key'].map((f) => readFile(canaryFile(f), 'utf8')));
      const revoked = new X509Certificate(rc);
      // A key that is not its certificate's (a run stopped between writing the keys and the
      // certificates) would fail every handshake: such a pair is unusable, new canaries are asked for.
      for (const [cert, key, name] of [[vc, vk, 'canary-valid'], [rc, rk, 'canary-revoked']] as const) {
        if (!new X509Certificate(cert).checkPrivateKey(createPrivateKey(key))) throw new Error(`${name}.key is not the key of ${name}.crt`);
      }
      return {
        valid: { certPem: vc, keyPem: vk },
        revoked: { certPem: rc, keyPem: rk, serial: revoked.serialNumber.toLowerCase().replace(/^0+(?=.)/, '') },
        notAfter: new Date(new X509Certificate(vc).validTo),
      };
    } catch (error) {
      // First start: none yet (made below). Unreadable, damaged or mismatched ones are said, then replaced (and kept as NAME.old-N).
      if (!isMissing(error)) log.warn({ event: 'broker_agent_canaries_unusable', err: (error as Error).message }, 'the kept canary certificates cannot be used; new ones are requested');
      return null;
    }
  }

  /** New canaries when there are none or the valid one expires within 14 days. */
  async function ensureCanaries() {
    if (!options.canary) return;
    if (canaries && canaries.notAfter.getTime() - Date.now() > 14 * DAY_MS) return;
    type Issued = { cert_pem: string; private_key_pem: string };
    const res = await json<{ valid: Issued; revoked: Issued }>('POST', '/api/v1/broker-agent/canaries', { kind: options.kind });
    // Keys first, then certificates: a crash in between leaves pairs that do not match (refused by
    // loadCanaries). No private key file is ever overwritten or deleted: what holds a name (the
    // previous canaries, or keys whose certificates never arrived) is kept as NAME.old-N, the first
    // free N, before the new file takes the name (as broker-config keeps server.key).
    const kept: string[] = [];
    for (const [name, pem] of [
      ['canary-valid.key', res.valid.private_key_pem],
      ['canary-revoked.key', res.revoked.private_key_pem],
      ['canary-valid.crt', res.valid.cert_pem],
      ['canary-revoked.crt', res.revoked.cert_pem],
    ] as const) {
      const previous = await keepPrevious(canaryFile(name), pem);
      if (previous) kept.push(previous);
      await writeFileAtomic(canaryFile(name), pem, 0o600);
    }
    canaries = await loadCanaries();
    await options.prepareCanaries?.([`certfleet/canary.${options.node}.valid`, `certfleet/canary.${options.node}.revoked`]);
    log.info({ event: 'broker_agent_canaries', node: options.node, kept }, kept.length ? `canary certificates issued; the previous files are kept as ${kept.join(', ')}` : 'canary certificates issued');
  }

  async function report(check: (CanaryCheck & { at: Date }) | null) {
    const n = lowestNumber();
    await json('POST', '/api/v1/broker-agent/report', {
      kind: options.kind,
      crl_number: n === null ? null : n.toString(),
      crl_numbers: applied.size ? numbers() : null,
      applied_at: state.appliedAt?.toISOString() ?? null,
      check: check ? { at: check.at.toISOString(), result: check.result, detail: check.detail } : null,
      error: state.lastError,
    });
  }

  /** A report made on the way to something else (a retry, a refusal): a failure is logged, and the next report carries the state. */
  async function reportOrWarn() {
    try {
      await report(null);
    } catch (error) {
      log.warn({ event: 'broker_agent_report_failed', err: (error as Error).message }, 'could not report to certfleet; the next report carries this state');
    }
  }

  async function reloadUntilDone() {
    for (const reloadBackoff = createBackoff(options.retryMs ?? 1000, options.maxRetryMs ?? 30_000); ; ) {
      try {
        await options.reloader.reload();
        return;
      } catch (error) {
        state.lastError = `broker reload failed: ${(error as Error).message}`;
        log.error({ event: 'broker_agent_reload_failed', err: (error as Error).message }, 'broker reload failed; retrying');
        await reportOrWarn();
        await sleep(jittered(reloadBackoff.next()));
        if (stopper.signal.aborted) throw error;
      }
    }
  }

  async function kickNewlyRevoked(previous: Map<string, CheckedCrl>, crls: CheckedCrl[]) {
    if (!options.sessions) return;
    const serials = crls.flatMap((crl) => {
      const before = previous.get(crl.issuerKeyId);
      return before ? newlyRevokedSerials(before.der, crl.der) : []; // first CRL after a start: nobody to compare with
    });
    const names: string[] = [];
    for (let i = 0; i < serials.length; i += 2000) {
      const page = await json<{ certificates: Array<{ common_name: string }> }>('POST', '/api/v1/broker-agent/revoked-common-names', { serials: serials.slice(i, i + 2000) });
      names.push(...page.certificates.map((c) => c.common_name));
    }
    await options.sessions.kick(names);
  }

  /**
   * GET /pki/ca-scopes.pem (If-None-Match): every CA the broker must trust with its scope; from a
   * server that does not serve it, /pki/cas.pem (no scopes). null when neither is served (older server).
   */
  async function fetchTrust() {
    const scoped = await call('GET', '/pki/ca-scopes.pem', { headers: trust?.scoped && trust.etag ? { 'if-none-match': trust.etag } : {} });
    if (scoped.status === 304 && trust?.scoped) {
      await scoped.arrayBuffer();
      return trust;
    }
    const scopedBody = await scoped.text();
    if (scoped.status === 200) {
      let entries;
      try {
        entries = parseCaScopes(scopedBody);
      } catch (error) {
        throw new HttpError(`GET /pki/ca-scopes.pem: ${(error as Error).message}`);
      }
      const list = entries.map((e) => ({ ...trustedCasFromPem(e.certPem)[0]!, pem: e.certPem, tenantId: e.tenantId }));
      if (list.length === 0) throw new HttpError('GET /pki/ca-scopes.pem: no CA certificate');
      trust = { etag: scoped.headers.get('etag'), cas: list, scoped: true };
      return trust;
    }
    if (scoped.status !== 404) throw new HttpError(`GET /pki/ca-scopes.pem: HTTP ${scoped.status} ${scopedBody.slice(0, 300)}`);
    const res = await call('GET', '/pki/cas.pem', { headers: trust && !trust.scoped && trust.etag ? { 'if-none-match': trust.etag } : {} });
    if (res.status === 304 && trust && !trust.scoped) {
      await res.arrayBuffer();
      return trust;
    }
    const body = await res.text();
    if (res.status === 404) return null;
    if (res.status !== 200) throw new HttpError(`GET /pki/cas.pem: HTTP ${res.status} ${body.slice(0, 300)}`);
    const pems = body.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    const list = pems.map((p) => ({ ...trustedCasFromPem(p)[0]!, pem: p + '\n' }));
    if (list.length === 0) throw new HttpError('GET /pki/cas.pem: no CA certificate');
    if (options.caScopesFile) log.error({ event: 'broker_agent_no_ca_scopes' }, 'certfleet does not serve /pki/ca-scopes.pem (an older server): the CA scope map is not updated, so CAs it does not list get nothing from the certfleet_acl plugin');
    trust = { etag: res.headers.get('etag'), cas: list, scoped: false };
    return trust;
  }

  /** Without a scope map (acl_file mode, RabbitMQ), a tenant-scoped CA is not this broker's to trust. */
  function eligible(list: TrustEntry[]): TrustEntry[] {
    if (options.caScopesFile) return list;
    return list.filter((c) => {
      if (!c.tenantId) return true;
      if (!excludedLogged.has(c.keyId)) {
        excludedLogged.add(c.keyId);
        log.warn(
          { event: 'broker_tenant_ca_excluded', issuer_key_id: c.keyId, tenant_id: c.tenantId },
          "a tenant-scoped CA is left out of the broker's CA file: without --ca-scopes-file (the certfleet_acl plugin) the broker cannot bind a certificate's CN to its CA's tenant, so that CA's devices are refused here",
        );
      }
      return false;
    });
  }

  /** The scope map of `keep`, when it differs from the file; true when written. Only with scopes from certfleet. */
  async function writeScopes(keep: TrustEntry[]): Promise<boolean> {
    if (!options.caScopesFile || !trust?.scoped || keep.some((c) => c.tenantId === undefined)) return false;
    const text = renderCaScopes(keep.map((c) => ({ certPem: c.pem, tenantId: c.tenantId ?? null })));
    if ((await unlessMissing(readFile(options.caScopesFile, 'utf8'))) === text) return false;
    await writeFileAtomic(options.caScopesFile, text, 0o644);
    log.info({ event: 'broker_agent_ca_scopes', node: options.node, cas: keep.map((c) => `${c.keyId}:${c.tenantId ?? '*'}`) }, 'broker CA scope map rewritten');
    return true;
  }

  /** The --ca-file: rewritten atomically with `keep` (in certfleet's order) when its CAs differ, the scope map first; the broker reloaded. */
  async function writeCaFile(all: TrustEntry[]) {
    const keep = eligible(all);
    if (keep.length === 0) return;
    // The map first: the broker never reloads a cafile holding a CA whose scope the map does not give.
    const scopesChanged = await writeScopes(keep);
    const now = cas.map((c) => c.keyId).join(',');
    if (now === keep.map((c) => c.keyId).join(',')) {
      if (scopesChanged) await reloadUntilDone();
      return;
    }
    await writeFileAtomic(options.caFile, keep.map((c) => c.pem).join(''), 0o644);
    await reloadUntilDone();
    cas = keep.map(({ pem: _pem, tenantId: _tenantId, ...ca }) => ca);
    log.info({ event: 'broker_agent_cafile', node: options.node, cas: cas.map((c) => c.keyId) }, 'broker CA file rewritten');
  }

  /** `received`: when the bundle's response began and ended (Date.now()), for the applied log line's timings. */
  async function apply(pem: string, received?: { headersAt: number; bodyAt: number }, trustRequest?: Promise<Awaited<ReturnType<typeof fetchTrust>>>) {
    // Several CAs: the trust set orders the two files. A CA that left is out of the CA file before its
    // CRL leaves the CRL file; a new CA enters the CA file only once its CRL is in the CRL file the
    // broker reloaded (Mosquitto refuses every certificate of a CA it has no CRL for).
    const set = await (trustRequest ?? fetchTrust());
    if (set) {
      const staying = cas.filter((c) => set.cas.some((t) => t.keyId === c.keyId));
      if (staying.length > 0 && staying.length < cas.length) await writeCaFile(set.cas.filter((t) => staying.some((c) => c.keyId === t.keyId)));
    }
    const verifyWith = set ? [...cas, ...set.cas.filter((t) => !cas.some((c) => c.keyId === t.keyId))] : cas;
    const checkStarted = Date.now();
    const cpuStarted = process.cpuUsage();
    const crls = checkBundle(pem, verifyWith, new Map([...applied].map(([k, v]) => [k, v.crlNumber])), new Date());
    const unchanged = crls.length === applied.size && crls.every((c) => applied.get(c.issuerKeyId)?.der.equals(c.der));
    if (!unchanged) {
      // A small clock skew: wait until every CRL is valid here, or the broker refuses every client meanwhile.
      const validFrom = Math.max(...crls.map((c) => c.thisUpdate.getTime()));
      if (validFrom > Date.now()) await sleep(validFrom - Date.now() + 1000);
      if (stopper.signal.aborted) return;
      const writeStarted = Date.now();
      await target.write(crls, pem);
      const reloadStarted = Date.now();
      await reloadUntilDone();
      const signalled = Date.now();
      const cpu = process.cpuUsage(cpuStarted);
      lastApplied = { at: Date.now(), bytes: pem.length };
      const previous = new Map(applied);
      applied.clear();
      for (const crl of crls) applied.set(crl.issuerKeyId, crl);
      state.crlNumbers = numbers();
      state.appliedAt = new Date();
      state.applied++;
      log.info(
        {
          event: 'broker_agent_applied',
          node: options.node,
          crl_numbers: state.crlNumbers,
          bytes: pem.length,
          // where a revocation's way to this broker goes: response begun → body read → checked → written → broker signalled
          response_at: received?.headersAt ?? null,
          ms: { download: received ? received.bodyAt - received.headersAt : null, check: writeStarted - checkStarted, write: reloadStarted - writeStarted, reload: signalled - reloadStarted },
          // the agent's own CPU from the check to the broker signalled (wall time above includes waiting for a CPU on a loaded host)
          cpu_ms: Math.round((cpu.user + cpu.system) / 1000),
        },
        'CRL bundle applied',
      );
      await kickNewlyRevoked(previous, crls).catch((error: Error) => log.warn({ event: 'broker_agent_kick_failed', err: error.message }, 'could not close revoked sessions'));
    }
    if (set) await writeCaFile(set.cas.filter((t) => crls.some((c) => c.issuerKeyId === t.keyId)));
    state.lastError = null;
    let check: (CanaryCheck & { at: Date; attempts: number }) | null = null;
    if (options.canary && canaries) {
      const listed = crls.some((c) => crlListsSerial(c.der, canaries!.revoked.serial));
      // A handshake costs more with a larger CRL (RabbitMQ decodes it at every handshake): the time-out grows with it.
      const crlBytes = crls.reduce((n, c) => n + c.der.length, 0);
      const canaryTarget = { ...options.canary, timeoutMs: options.canary.timeoutMs ?? canaryTimeoutMs(crlBytes) };
      check = { ...(await checkEnforcement(canaryTarget, canaries, listed)), at: new Date() };
      state.lastCheck = check;
      if (check.attempts > 1) log.warn({ event: 'broker_agent_check_retried', attempts: check.attempts, result: check.result }, 'canary check needed retries (broker reloading)');
      if (check.result === 'failed') log.error({ event: 'broker_agent_enforcement_failed', node: options.node, detail: check.detail }, 'the broker does not enforce the CRL');
    }
    await report(check);
  }

  async function cycle() {
    await ensureCanaries();
    // A large CRL was just reloaded: wait out the bound; the long poll then returns the latest bundle (all revocations of the wait at once).
    if (lastApplied && lastApplied.bytes >= largeCrlBytes && largeIntervalMs > 0) {
      const wait = lastApplied.at + largeIntervalMs - Date.now();
      if (wait > 0) {
        log.info({ event: 'broker_agent_reload_deferred', ms: wait }, 'large CRL: the next reload waits for the reload bound; revocations meanwhile share it');
        await (options.waitOutReloadBound ? options.waitOutReloadBound(wait, stopper.signal) : sleep(wait));
        if (stopper.signal.aborted) return;
      }
    }
    const res = await call('GET', `/pki/crl-bundle.pem?wait=${waitSeconds}`, {
      headers: etag ? { 'if-none-match': `"${etag}"` } : {},
      timeoutMs: (waitSeconds + 30) * 1000,
    });
    const headersAt = Date.now();
    if (res.status === 304) {
      await res.arrayBuffer();
      await report(null);
      return;
    }
    // The trust set is asked for while the bundle's body arrives, not after it: one round trip to a
    // busy certfleet (it has just published) less on the way to the broker.
    const trustRequest = res.status === 200 ? fetchTrust() : null;
    trustRequest?.catch(() => undefined); // awaited by apply(); a failure there is this cycle's failure
    // PEM is ASCII: latin1 is a byte copy, where text() decodes UTF-8 (6.6 MB at 100,000 entries)
    const body = Buffer.from(await res.arrayBuffer()).toString('latin1');
    const bodyAt = Date.now();
    if (res.status !== 200) throw new HttpError(`GET /pki/crl-bundle.pem: HTTP ${res.status} ${body.slice(0, 300)}`);
    const tag = /"([0-9a-f]{64})"/.exec(res.headers.get('etag') ?? '')?.[1] ?? null;
    try {
      await apply(body, { headersAt, bodyAt }, trustRequest ?? undefined);
    } catch (error) {
      if (!(error instanceof BundleRejectedError)) throw error;
      state.refused++;
      state.lastError = error.message;
      log.error({ event: 'broker_agent_bundle_refused', code: error.code, err: error.message }, 'CRL bundle refused; the broker keeps its current CRL');
      await reportOrWarn();
    }
    etag = tag; // a refused bundle is not fetched again: the agent waits for a newer one
  }

  async function loop() {
    await init();
    while (!stopper.signal.aborted) {
      try {
        await cycle();
        backoff.reset();
      } catch (error) {
        if (stopper.signal.aborted) break;
        state.lastError = (error as Error).message;
        const delay = jittered(backoff.next());
        log.warn({ event: 'broker_agent_retry', err: state.lastError, retry_in_ms: delay }, 'broker agent cycle failed; retrying');
        await sleep(delay);
      }
    }
  }

  return {
    run: () => (running ??= loop()),
    async stop() {
      stopper.abort();
      await running?.catch(() => undefined);
      await options.sessions?.close();
    },
    status: () => ({ ...state }),
  };
}
