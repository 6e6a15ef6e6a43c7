/**
 * Broker nodes (certfleet broker-agent): their reports, the operator's list with lag, the system
 * alerts, and the canary certificates that prove enforcement.
 *
 * - BROKER_ENFORCEMENT_FAILED (CRITICAL, per node): the node's last canary check failed (the
 *   broker accepted the revoked canary, or refused the valid one). Raised at once by the report.
 * - BROKER_NODE_LAGGING (HIGH, per node): the node applied a CRL older than the latest and the
 *   latest is older than `lagAlertMs`, or the node has not reported for `reportTimeoutMs`.
 * Both are system alerts (tenant __system__): the operator alert API, metrics and webhooks.
 */
import { SYSTEM_TENANT } from '../domain/alert.ts';
import { AppError } from '../domain/errors.ts';
import { SEVERITY } from '../domain/expiry-policy.ts';
import { isValidBrokerNodeName, RESERVED_TENANT_ID } from '../domain/identifiers.ts';
import type { AppDeps } from './deps.ts';
import type { Actor } from './ports.ts';
import type { BrokerNodeRecord, OperatorRepositories } from './storage-ports.ts';
import type { UseCases } from './use-cases.ts';

export const BROKER_FLEET_ACTOR = 'system:broker-fleet';
export const BROKER_KINDS = ['mosquitto', 'rabbitmq'] as const;
export type BrokerKind = (typeof BROKER_KINDS)[number];

export interface BrokerFleetSettings {
  lagAlertMs: number;
  reportTimeoutMs: number;
  /** The CA key ids whose CRLs the bundle holds (every trusted CA; read at each use, the set changes). */
  issuerKeyIds: string[] | (() => string[]);
}

export interface BrokerNodeView {
  node: string;
  kind: BrokerKind;
  crl_number: string | null;
  /** The CRL number applied per CA (issuer key id); null when the agent did not say. */
  crl_numbers: Record<string, string> | null;
  applied_at: string | null;
  reported_at: string;
  last_check_at: string | null;
  last_check_result: 'passed' | 'failed' | null;
  last_check_detail: string | null;
  last_error: string | null;
  /** Seconds the node is behind the latest CRL (0: it applied the latest). */
  lag_seconds: number;
  /** ok | lagging | silent | enforcement_failed */
  state: 'ok' | 'lagging' | 'silent' | 'enforcement_failed';
}

export interface BrokerReportInput {
  kind: BrokerKind;
  crl_number?: string | null;
  crl_numbers?: Record<string, string> | null;
  applied_at?: string | null;
  check?: { at: string; result: 'passed' | 'failed'; detail?: string | null } | null;
  error?: string | null;
}

/** The lowest latest number (what a node reporting only its lowest is compared with), and each CA's latest. */
type Latest = { crlNumber: bigint; publishedAt: Date | null; perCa: Map<string, { crlNumber: bigint; publishedAt: Date | null }> } | null;

async function latestCrl(repos: OperatorRepositories, issuerKeyIds: string[] | (() => string[])): Promise<Latest> {
  let latest: Latest = null;
  const perCa = new Map<string, { crlNumber: bigint; publishedAt: Date | null }>();
  for (const id of typeof issuerKeyIds === 'function' ? issuerKeyIds() : issuerKeyIds) {
    const info = await repos.crl.readCrlInfo(id);
    if (!info?.sha256) continue;
    const publishedAt = info.publishedAt ?? info.thisUpdate;
    perCa.set(id, { crlNumber: info.crlNumber, publishedAt });
    if (!latest || info.crlNumber < latest.crlNumber) latest = { crlNumber: info.crlNumber, publishedAt, perCa };
  }
  return latest;
}

/**
 * How long the node has been behind, in ms (0: it has every CA's latest CRL). With per-CA numbers
 * (several CAs), each CA's latest CRL counts: the node is behind since the oldest publication it
 * lacks (a CA it has no CRL of at all included). Without them, its lowest number is compared with
 * the lowest latest one.
 */
function lagOf(n: BrokerNodeRecord, latest: Latest, now: Date): number {
  if (latest === null) return 0;
  if (n.crlNumbers) {
    let since: number | null = null;
    for (const [id, ca] of latest.perCa) {
      const applied = n.crlNumbers[id];
      if (applied !== undefined && applied >= ca.crlNumber) continue;
      const t = (ca.publishedAt ?? n.reportedAt).getTime();
      since = since === null ? t : Math.min(since, t);
    }
    return since === null ? 0 : Math.max(0, now.getTime() - since);
  }
  const behind = n.crlNumber === null || n.crlNumber < latest.crlNumber;
  return behind ? Math.max(0, now.getTime() - (latest.publishedAt ?? n.reportedAt).getTime()) : 0;
}

/** The node as the operator sees it, at `now`. Pure. */
export function viewOf(n: BrokerNodeRecord, latest: Latest, now: Date, s: Pick<BrokerFleetSettings, 'lagAlertMs' | 'reportTimeoutMs'>): BrokerNodeView {
  const lagMs = lagOf(n, latest, now);
  const silent = now.getTime() - n.reportedAt.getTime() > s.reportTimeoutMs;
  const state = n.checkResult === 'failed' ? 'enforcement_failed' : silent ? 'silent' : lagMs > s.lagAlertMs ? 'lagging' : 'ok';
  const iso = (d: Date | null) => d?.toISOString() ?? null;
  return {
    node: n.node,
    kind: n.kind,
    crl_number: n.crlNumber?.toString() ?? null,
    crl_numbers: n.crlNumbers ? Object.fromEntries(Object.entries(n.crlNumbers).map(([k, v]) => [k, v.toString()])) : null,
    applied_at: iso(n.appliedAt),
    reported_at: n.reportedAt.toISOString(),
    last_check_at: iso(n.checkedAt),
    last_check_result: n.checkResult,
    last_check_detail: n.checkDetail,
    last_error: n.lastError,
    lag_seconds: Math.round(lagMs / 1000),
    state,
  };
}

/** Raises or resolves the node's two system alerts from its view. */
async function reconcileAlerts(repos: OperatorRepositories, view: BrokerNodeView, now: Date, enforcement: boolean) {
  const key = (type: string) => ({ tenantId: SYSTEM_TENANT, type, fingerprint: `broker-node:${view.node}` });
  const details = { node: view.node, kind: view.kind, crl_number: view.crl_number, lag_seconds: view.lag_seconds, reported_at: view.reported_at };
  if (!enforcement) {
    // the periodic check leaves the enforcement alert to the reports
  } else if (view.last_check_result === 'failed') {
    await repos.alerts.raiseSystemAlert({
      ...key('BROKER_ENFORCEMENT_FAILED'),
      severity: SEVERITY.CRITICAL,
      summary: `Broker node ${view.node} does not enforce the CRL: ${view.last_check_detail ?? 'canary check failed'}`,
      details: { ...details, check_at: view.last_check_at, detail: view.last_check_detail },
      now,
    });
  } else if (view.last_check_result === 'passed') {
    await repos.alerts.resolveSystemAlert({ ...key('BROKER_ENFORCEMENT_FAILED'), actor: BROKER_FLEET_ACTOR, now });
  }
  if (view.state === 'lagging' || view.state === 'silent') {
    await repos.alerts.raiseSystemAlert({
      ...key('BROKER_NODE_LAGGING'),
      severity: SEVERITY.HIGH,
      summary:
        view.state === 'silent'
          ? `Broker node ${view.node} has not reported since ${view.reported_at}`
          : `Broker node ${view.node} is ${view.lag_seconds} s behind the latest CRL (applied ${view.crl_number ?? 'none'})`,
      details,
      now,
    });
  } else {
    await repos.alerts.resolveSystemAlert({ ...key('BROKER_NODE_LAGGING'), actor: BROKER_FLEET_ACTOR, now });
  }
}

/** `useCases` absent (the standalone worker): no canaries, only reports, lists and checks. */
export function createBrokerFleet(deps: Pick<AppDeps, 'storage' | 'clock'> & { settings: BrokerFleetSettings; useCases?: Pick<UseCases, 'registerDevice' | 'issueCertificate' | 'revokeCertificate'> }) {
  const { storage, clock, settings } = deps;

  async function report(node: string, input: BrokerReportInput): Promise<BrokerNodeView> {
    const now = clock.now();
    const number = input.crl_number === undefined || input.crl_number === null ? null : BigInt(input.crl_number);
    return storage.asOperator(async (repos) => {
      const record = await repos.brokerNodes.recordReport({
        node,
        kind: input.kind,
        crlNumber: number,
        appliedAt: input.applied_at ? new Date(input.applied_at) : null,
        checkedAt: input.check ? new Date(input.check.at) : null,
        checkResult: input.check?.result ?? null,
        checkDetail: input.check?.detail ?? null,
        lastError: input.error ?? null,
        crlNumbers: input.crl_numbers ? Object.fromEntries(Object.entries(input.crl_numbers).map(([k, v]) => [k.toLowerCase(), BigInt(v)])) : null,
        now,
      });
      const view = viewOf(record, await latestCrl(repos, settings.issuerKeyIds), now, settings);
      await reconcileAlerts(repos, view, now, input.check !== undefined && input.check !== null);
      return view;
    });
  }

  async function list(): Promise<{ nodes: BrokerNodeView[]; latest_crl_number: string | null }> {
    const now = clock.now();
    return storage.asOperator(async (repos) => {
      const latest = await latestCrl(repos, settings.issuerKeyIds);
      const nodes = (await repos.brokerNodes.listNodes()).map((n) => viewOf(n, latest, now, settings));
      return { nodes, latest_crl_number: latest?.crlNumber.toString() ?? null };
    });
  }

  /** The worker's periodic check: lagging or silent nodes raise BROKER_NODE_LAGGING, recovered ones close it. */
  async function checkNodes(): Promise<{ nodes: number; lagging: string[] }> {
    const now = clock.now();
    return storage.asOperator(async (repos) => {
      const latest = await latestCrl(repos, settings.issuerKeyIds);
      const lagging: string[] = [];
      const nodes = await repos.brokerNodes.listNodes();
      for (const n of nodes) {
        const view = viewOf(n, latest, now, settings);
        if (view.state === 'lagging' || view.state === 'silent') lagging.push(view.node);
        await reconcileAlerts(repos, view, now, false);
      }
      return { nodes: nodes.length, lagging };
    });
  }

  /**
   * New canaries for one node (devices `canary.<node>.valid|revoked` of the reserved tenant
   * `certfleet`): a valid certificate and a revoked one, with their keys, for that node's agent
   * only. The node's previous canaries are revoked (only one valid canary per node exists).
   */
  async function issueCanaries(node: string, kind: BrokerKind) {
    if (!isValidBrokerNodeName(node)) throw new AppError('VALIDATION_FAILED', 'invalid broker node name');
    const useCases = deps.useCases;
    if (!useCases) throw new AppError('CA_NOT_CONFIGURED', 'this process issues no canaries');
    const actor: Actor = { id: `${BROKER_FLEET_ACTOR}:${node}`, tenantId: RESERVED_TENANT_ID };
    const previous = await storage.asOperator((repos) => repos.brokerNodes.findNode(node));
    const issued: Record<'valid' | 'revoked', { id: number; serial_number: string; cert_pem: string; private_key_pem: string }> = {} as never;
    for (const which of ['valid', 'revoked'] as const) {
      const deviceId = `canary.${node}.${which}`;
      await useCases.registerDevice(actor, { device_id: deviceId }, { system: true }).catch((e: unknown) => {
        if (!(e instanceof AppError && e.code === 'DEVICE_EXISTS')) throw e;
      });
      const res = await useCases.issueCertificate(actor, deviceId, { validityDays: 90, key: { kind: 'generate', keyType: 'ec-p256' } });
      issued[which] = { id: res.certificate.id, serial_number: res.certificate.serial_number, cert_pem: res.cert_pem, private_key_pem: res.private_key_pem! };
    }
    await useCases.revokeCertificate(actor, issued.revoked.id, 'superseded');
    if (previous?.canaryValidId) {
      await useCases.revokeCertificate(actor, previous.canaryValidId, 'superseded').catch((e: unknown) => {
        if (!(e instanceof AppError)) throw e; // already revoked or expired: fine
      });
    }
    await storage.asOperator((repos) => repos.brokerNodes.setCanaries(node, kind, { valid: issued.valid.id, revoked: issued.revoked.id }, clock.now()));
    return { node, valid: issued.valid, revoked: issued.revoked };
  }

  /** Whose live sessions a node closes after applying a bundle: the CNs of revoked certificates among `serials` (at most 5 000). */
  async function revokedCommonNames(serials: string[]) {
    if (serials.length > 5_000) throw new AppError('VALIDATION_FAILED', 'at most 5000 serials per request');
    const normalized = serials.map((s) => s.toLowerCase().replace(/^0+(?=.)/, ''));
    return { certificates: await storage.asOperator((repos) => repos.brokerNodes.revokedCommonNames(normalized)) };
  }

  return { report, list, checkNodes, issueCanaries, revokedCommonNames };
}

export type BrokerFleet = ReturnType<typeof createBrokerFleet>;
