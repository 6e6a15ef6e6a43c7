/**
 * `certfleet ca ...`: the Device CA lifecycle (issue 19; DESIGN section 7 names), over the operator
 * API (/api/v1/operator/cas). Needs operator credentials. `--json` prints the CA objects (id, status,
 * kind, parent_id, tenant_id, subject, not_after, active_certificates, ...); `ca list --json` prints an
 * array of them. `ca create --root` makes a certfleet root, `ca create --parent ROOT_ID` (or
 * `--signed-by`) an intermediate under it.
 */
import { readFile } from 'node:fs/promises';
import type { CaView } from '../app/manage-cas.ts';
import { clientFromFlags } from './client/credentials.ts';
import { clientFlags, str } from './client-flags.ts';
import { details, print, table } from './output.ts';
import { UsageError, type GroupSpec } from './spec.ts';

const CAS = '/api/v1/operator/cas';

const readText = async (path: string, what: string) => {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read ${what} ${path}: ${(e as Error).message}`);
  }
};

const caId = (id: string) => {
  if (!/^ca_[0-9a-f]{1,32}$/.test(id)) throw new UsageError(`ID must be a CA id such as ca_0123456789abcdef (got "${id}"): see certfleet ca list`);
  return id;
};

/**
 * The preamble of the commands on one CA: a malformed ID is a usage error (exit 2), before any
 * credentials are needed; then the operator API client and the CA's path under it.
 */
const oneCa = async (flags: Parameters<typeof clientFromFlags>[0], id: string, check: () => void = () => {}) => {
  const path = `${CAS}/${caId(id)}`;
  check();
  return { api: await clientFromFlags(flags), path };
};

const caDetails = (c: CaView, extra: [string, string | number | null][] = []) =>
  details([
    ['id', c.id],
    ['status', c.status],
    ['kind', c.parent_id ? `intermediate of ${c.parent_id}` : c.kind === 'root' ? 'root (signs intermediates only)' : 'issuing (self-signed)'],
    ['scope', c.tenant_id ?? 'global'],
    ['subject', c.subject],
    ['not after', c.not_after],
    ['key', `${c.key.kind} ${c.key.ref}`],
    ['active certificates', c.active_certificates],
    ...extra,
  ]);

const tenantFlag = { tenant: { type: 'string' as const, value: 'TENANT', help: "the tenant whose own CA it is (default: the global scope)" } };

export const caGroup: GroupSpec = {
  summary: 'Device CAs: stage, activate, retire, revoke (operator)',
  subcommands: {
    list: {
      summary: 'every CA with its status, scope and active certificates',
      flags: { ...clientFlags },
      example: 'certfleet ca list --json',
      async run(flags) {
        const api = await clientFromFlags(flags);
        const { cas } = await api.get<{ cas: CaView[] }>(CAS);
        const rows = cas.map((c) => [c.id, c.status, c.kind === 'root' ? 'root' : (c.parent_id ?? '-'), c.tenant_id ?? 'global', c.subject, c.not_after, c.active_certificates]);
        print(flags, table(['id', 'status', 'root / parent', 'scope', 'subject', 'not after', 'active certs'], rows), cas);
        return 0;
      },
    },
    show: {
      summary: 'one CA and its migration progress (active certificates per tenant)',
      args: ['ID'],
      flags: { ...clientFlags },
      example: 'certfleet ca show ca_0123456789abcdef',
      async run(flags, [id]) {
        const { api, path } = await oneCa(flags, id);
        const res = await api.get<{ ca: CaView; cert_pem: string; key_loaded: boolean; progress: { tenant_id: string; active_certificates: number }[] }>(path);
        const progress = res.progress.length ? `\n${table(['tenant', 'active certs'], res.progress.map((p) => [p.tenant_id, p.active_certificates]))}` : '';
        print(flags, caDetails(res.ca, [['key loaded', String(res.key_loaded)]]) + progress, { ...res.ca, key_loaded: res.key_loaded, progress: res.progress, cert_pem: res.cert_pem });
        return 0;
      },
    },
    create: {
      summary:
        'stage a new CA: certfleet generates its key (a file under CA_KEY_DIR, or in the PKCS#11 token with --key-uri); self-signed, signed by a certfleet root (--parent), or a root itself (--root)',
      flags: {
        ...clientFlags,
        'key-type': { type: 'string', value: 'TYPE', help: 'ec-p256 (default) or rsa-3072', choices: ['ec-p256', 'rsa-3072'] },
        ...tenantFlag,
        'key-uri': { type: 'string', value: 'URI', help: 'generate the key in the PKCS#11 token: pkcs11:token=...;object=LABEL (the server\'s PKCS11_PIN_FILE logs in)' },
        cn: { type: 'string', value: 'NAME', help: 'the CA common name (default: certfleet Device CA <date> <id>)' },
        root: { type: 'boolean', help: 'a certfleet root: in service at once, signs only intermediates (--parent) and its own CRL, never a device certificate' },
        parent: { type: 'string', value: 'ROOT_ID', help: 'an intermediate signed by this certfleet root (pathLen 0); devices that trust the root need no new trust anchor' },
        'signed-by': { type: 'string', value: 'ROOT_ID', help: 'the same as --parent' },
      },
      example: [
        'certfleet ca create',
        'certfleet ca create --tenant acme --key-uri "pkcs11:token=certfleet;object=acme-ca-2"',
        'certfleet ca create --root --key-uri "pkcs11:token=certfleet;object=root-ca"',
        'certfleet ca create --parent ca_0123456789abcdef --tenant acme',
      ],
      async run(flags) {
        const parent = str(flags.parent) ?? str(flags['signed-by']);
        if (str(flags.parent) && str(flags['signed-by']) && str(flags.parent) !== str(flags['signed-by'])) throw new UsageError('--parent and --signed-by name different roots: give one');
        if (flags.root && parent) throw new UsageError('--root makes a root, which has no parent: drop --parent');
        const api = await clientFromFlags(flags);
        const body: Record<string, unknown> = {};
        if (flags.root) body.kind = 'root';
        if (parent) body.parent_id = caId(parent);
        if (str(flags['key-type'])) body.key_type = str(flags['key-type']);
        if (str(flags.tenant)) body.tenant_id = str(flags.tenant);
        if (str(flags['key-uri'])) body.key_uri = str(flags['key-uri']);
        if (str(flags.cn)) body.common_name = str(flags.cn);
        const ca = await api.post<CaView>(CAS, body);
        const next =
          ca.kind === 'root'
            ? `root in service: it signs no device certificate; create an intermediate under it: certfleet ca create --parent ${ca.id}`
            : `staged: wait until every broker has it and its CRL, then: certfleet ca activate ${ca.id}`;
        print(flags, `${caDetails(ca)}\n${next}`, ca);
        return 0;
      },
    },
    import: {
      summary: 'stage your own CA ("bring your own CA"): its certificate and its key file or the PKCS#11 URI of its key',
      flags: {
        ...clientFlags,
        cert: { type: 'string', value: 'FILE', help: 'the CA certificate (PEM; required)' },
        key: { type: 'string', value: 'FILE', help: 'its private key (PEM, unencrypted; stored on the server as a 0600 file under CA_KEY_DIR)' },
        'key-uri': { type: 'string', value: 'URI', help: 'or the PKCS#11 URI of its key in the token' },
        ...tenantFlag,
      },
      example: ['certfleet ca import --cert ca.crt --key ca.key', 'certfleet ca import --cert ca.crt --key-uri "pkcs11:token=certfleet;object=byo-ca" --tenant acme'],
      async run(flags) {
        const cert = str(flags.cert);
        if (!cert) throw new UsageError('--cert FILE is required');
        if (!str(flags.key) === !str(flags['key-uri'])) throw new UsageError('give exactly one of --key FILE or --key-uri URI');
        const api = await clientFromFlags(flags);
        const body: Record<string, unknown> = { cert_pem: await readText(cert, 'the CA certificate') };
        if (str(flags.key)) body.key_pem = await readText(str(flags.key)!, 'the CA key');
        if (str(flags['key-uri'])) body.key_uri = str(flags['key-uri']);
        if (str(flags.tenant)) body.tenant_id = str(flags.tenant);
        const ca = await api.post<CaView>(`${CAS}/import`, body);
        print(flags, `${caDetails(ca)}\nstaged: wait until every broker has it and its CRL, then: certfleet ca activate ${ca.id}`, ca);
        return 0;
      },
    },
    activate: {
      summary: "activate a staged CA: its scope's new certificates and renewals use it; the previous active CA becomes retiring",
      args: ['ID'],
      flags: { ...clientFlags },
      example: 'certfleet ca activate ca_0123456789abcdef',
      async run(flags, [id]) {
        const { api, path } = await oneCa(flags, id);
        const res = await api.post<{ ca: CaView; previous: string | null }>(`${path}/activate`, {});
        const next = res.previous ? `\n${res.previous} is now retiring: move its devices with certfleet rotate-expiring --issuer ${res.previous}` : '';
        print(flags, caDetails(res.ca) + next, { ...res.ca, previous: res.previous });
        return 0;
      },
    },
    retire: {
      summary: 'retire a retiring CA once no unexpired, unrevoked certificate remains under it (or --force with --reason)',
      args: ['ID'],
      flags: {
        ...clientFlags,
        force: { type: 'boolean', help: 'retire even though certificates remain (they will be refused by the brokers); needs --reason' },
        reason: { type: 'string', value: 'TEXT', help: 'why (audited)' },
      },
      example: ['certfleet ca retire ca_0123456789abcdef', 'certfleet ca retire ca_0123456789abcdef --force --reason "devices decommissioned"'],
      async run(flags, [id]) {
        const { api, path } = await oneCa(flags, id, () => {
          if (flags.force && !str(flags.reason)) throw new UsageError('--force needs --reason TEXT');
        });
        const body: Record<string, unknown> = {};
        if (flags.force) body.force = true;
        if (str(flags.reason)) body.reason = str(flags.reason);
        const res = await api.post<{ ca: CaView }>(`${path}/retire`, body);
        print(flags, caDetails(res.ca), res.ca);
        return 0;
      },
    },
    revoke: {
      summary: 'revoke a compromised CA (--reason cACompromise): it signs nothing from now on and brokers stop trusting it',
      args: ['ID'],
      flags: { ...clientFlags, reason: { type: 'string', value: 'REASON', help: 'cACompromise (required)', choices: ['cACompromise'] } },
      example: 'certfleet ca revoke ca_0123456789abcdef --reason cACompromise',
      async run(flags, [id]) {
        const { api, path } = await oneCa(flags, id, () => {
          if (str(flags.reason) !== 'cACompromise') throw new UsageError('--reason cACompromise is required (to end a CA without compromise, retire it)');
        });
        const res = await api.post<{ ca: CaView; was: string; intermediates_revoked?: string[] }>(`${path}/revoke`, { reason: 'cACompromise' });
        const cascade = res.intermediates_revoked?.length ? `\nintermediates revoked with it: ${res.intermediates_revoked.join(', ')}` : '';
        print(flags, `${caDetails(res.ca)}${cascade}\nrevoked (was ${res.was}): see the README, "CA compromise", for the next steps`, {
          ...res.ca,
          was: res.was,
          ...(res.intermediates_revoked ? { intermediates_revoked: res.intermediates_revoked } : {}),
        });
        return 0;
      },
    },
  },
};
