import { readFile } from 'node:fs/promises';
import type { ClaimCaRecord } from '../renewal/ports.ts';
import { CUSTOMER } from './client/api-client.ts';
import { clientFromFlags } from './client/credentials.ts';
import { clientFlags, str } from './client-flags.ts';
import { details, print, table } from './output.ts';
import { UsageError, type GroupSpec } from './spec.ts';

const readText = async (path: string, what: string) => {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read ${what} ${path}: ${(e as Error).message}`);
  }
};

const caRows = (cas: ClaimCaRecord[]) => cas.map((c) => [c.id, c.name ?? '', c.subject, c.not_after, c.crl ? `${c.crl.entries} revoked` : 'none']);

/** Factory onboarding (README "Factory onboarding"): the tenant's claim CAs. Changes need a tenant-admin token. */
export const claimCasGroup: GroupSpec = {
  summary: "the tenant's claim CAs: manufacturer CA certificates whose claim certificates onboard devices",
  subcommands: {
    list: {
      summary: 'the registered claim CAs',
      flags: { ...clientFlags },
      example: 'certfleet claim-cas list',
      async run(flags) {
        const api = await clientFromFlags(flags);
        const page = await api.get<{ claim_cas: ClaimCaRecord[] }>(`${CUSTOMER}/claim-cas`);
        print(flags, table(['id', 'name', 'subject', 'not after', 'crl'], caRows(page.claim_cas)), page);
        return 0;
      },
    },
    add: {
      summary: "register a manufacturer's CA certificate (PEM, no key; tenant-admin)",
      args: ['CA_CERT_PEM_FILE'],
      flags: {
        ...clientFlags,
        name: { type: 'string', value: 'TEXT', help: 'a name for it' },
        crl: { type: 'string', value: 'FILE', help: "the CA's CRL (PEM), signed by it" },
      },
      example: 'certfleet claim-cas add mfr-ca.crt --name "Acme Manufacturing" --crl mfr.crl',
      async run(flags, [file]) {
        const api = await clientFromFlags(flags);
        const body: Record<string, unknown> = { ca_cert_pem: await readText(file, 'the CA certificate') };
        if (str(flags.name)) body.name = str(flags.name);
        if (str(flags.crl)) body.crl_pem = await readText(str(flags.crl)!, 'the CRL');
        const created = await api.post<{ claim_ca: ClaimCaRecord }>(`${CUSTOMER}/claim-cas`, body);
        const c = created.claim_ca;
        print(flags, details([['id', c.id], ['subject', c.subject], ['fingerprint', c.fingerprint_sha256], ['not after', c.not_after], ['crl', c.crl ? `${c.crl.entries} revoked` : 'none']]), created);
        return 0;
      },
    },
    crl: {
      summary: "replace a claim CA's CRL (PEM, signed by it; tenant-admin)",
      args: ['ID', 'CRL_PEM_FILE'],
      flags: { ...clientFlags },
      example: 'certfleet claim-cas crl 3 mfr.crl',
      async run(flags, [id, file]) {
        if (!/^[1-9][0-9]{0,15}$/.test(id)) throw new UsageError(`ID must be a claim CA id (got "${id}")`);
        const api = await clientFromFlags(flags);
        const updated = await api.put<{ claim_ca: ClaimCaRecord }>(`${CUSTOMER}/claim-cas/${id}/crl`, { crl_pem: await readText(file, 'the CRL') });
        print(flags, details([['id', updated.claim_ca.id], ['crl', `${updated.claim_ca.crl?.entries ?? 0} revoked, this update ${updated.claim_ca.crl?.this_update ?? ''}`]]), updated);
        return 0;
      },
    },
  },
};

export const provisioningPolicyGroup: GroupSpec = {
  summary: "the tenant's provisioning policy for factory onboarding",
  subcommands: {
    show: {
      summary: 'the policy (the default when none was set)',
      flags: { ...clientFlags },
      example: 'certfleet provisioning-policy show --json',
      async run(flags) {
        const api = await clientFromFlags(flags);
        const view = await api.get<{ policy: unknown; default: boolean; approval_secret_set: boolean }>(`${CUSTOMER}/provisioning-policy`);
        print(flags, JSON.stringify(view, null, 2), view);
        return 0;
      },
    },
    set: {
      summary: 'replace the policy with the JSON of a file (tenant-admin); prints a new approval secret once',
      args: ['POLICY_JSON_FILE'],
      flags: { ...clientFlags },
      example: 'certfleet provisioning-policy set policy.json',
      notes: 'The file: {"admit": {"cn_patterns": ["SN-*"], "serials": []}, "device_id": {"from": "cn", "pattern": null}, "site_id": null, "approval_webhook": null}.',
      async run(flags, [file]) {
        let body: unknown;
        try {
          body = JSON.parse(await readText(file, 'the policy'));
        } catch (e) {
          if (e instanceof UsageError) throw e;
          throw new UsageError(`${file} is not JSON: ${(e as Error).message}`);
        }
        const api = await clientFromFlags(flags);
        const view = await api.put<{ approval_secret?: string; warning?: string }>(`${CUSTOMER}/provisioning-policy`, body);
        print(flags, `${JSON.stringify(view, null, 2)}${view.warning ? `\n${view.warning}` : ''}`, view);
        return 0;
      },
    },
  },
};
