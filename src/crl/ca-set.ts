/**
 * The CAs the CRL pipeline publishes and the brokers trust: what the publication side needs of
 * the CA records (their store, statuses and scopes are src/app's and src/storage's business).
 *
 * - staged, active, retiring: in the trust set. Each has its own CRL (own number series, the
 *   crl_state row of its key id), served at /pki/ca/{id}/crl, listed in the broker's CRL file
 *   and the CRL bundle, and its certificate is in /pki/cas.pem and the broker's cafile.
 * - retired: no new CRL is built; the last one stays served at /pki/ca/{id}/crl (it is valid
 *   until its nextUpdate, and by then the CA's certificates have expired or been revoked). It
 *   leaves the broker's cafile and then its CRL file: the broker refuses its certificates.
 * - revoked: leaves the trust set at once (cafile first, then its CRL): every certificate it
 *   issued is refused by the brokers, whatever its CN.
 */
import type { DeviceCa } from '../pki/device-ca.ts';
import type { Config } from '../config.ts';

export type CaStatus = 'staged' | 'active' | 'retiring' | 'retired' | 'revoked';

export interface PublishedCa {
  /** The CA's id: /pki/ca/{id}.pem, /pki/ca/{id}/crl. */
  id: string;
  status: CaStatus;
  /** null: global scope. */
  tenantId: string | null;
  ca: DeviceCa;
  /** Hex key id (SKI): the crl_state row. */
  issuerKeyId: string;
  /** The CRL URL its certificates carry (and its served CRL's Issuing Distribution Point). */
  distributionPointUrl: string;
}

/** The statuses whose CRLs are published and whose certificates brokers and devices trust. */
export const TRUSTED_STATUSES: readonly CaStatus[] = ['staged', 'active', 'retiring'];
export const isTrusted = (ca: Pick<PublishedCa, 'status'>): boolean => TRUSTED_STATUSES.includes(ca.status);

/**
 * The CA the certificate of id `caId` carries as CRL distribution point: `/pki/ca/{id}/crl`.
 * The CA loaded from DEVICE_CA_CERT_PATH before CAs became records (`legacy`) keeps `/pki/crl`,
 * the URL its certificates already carry (OpenSSL refuses a CRL whose IDP differs from the
 * certificate's CDP as "different CRL scope").
 */
export function caDistributionPointUrl(config: Pick<Config, 'publicBaseUrl'>, caId: string, legacy: boolean): string {
  return legacy ? `${config.publicBaseUrl}/pki/crl` : `${config.publicBaseUrl}/pki/ca/${encodeURIComponent(caId)}/crl`;
}

/** The CAs to publish, and a change subscription (a CA staged, activated, retired, revoked). */
export interface CaSource {
  /** Every CA the publication knows: the trusted ones and the retired/revoked ones still served. */
  list(): PublishedCa[];
  /** The default scope's active CA: what /pki/ca.pem and /pki/crl serve. */
  defaultCa(): PublishedCa | null;
  onChange(listener: () => void): () => void;
}

/** One CA from the configuration (DEVICE_CA_CERT_PATH), active, global, legacy distribution point. */
export function staticCaSource(ca: DeviceCa | null, config: Pick<Config, 'publicBaseUrl'>): CaSource {
  const id = ca ? ca.subjectKeyId.toString('hex') : '';
  const entry: PublishedCa | null = ca
    ? { id, status: 'active', tenantId: null, ca, issuerKeyId: id, distributionPointUrl: caDistributionPointUrl(config, id, true) }
    : null;
  return { list: () => (entry ? [entry] : []), defaultCa: () => entry, onChange: () => () => undefined };
}

/** A CA source whose list the caller sets (tests, and an adapter over the CA records). */
export function mutableCaSource(initial: PublishedCa[], defaultId: string | null): CaSource & { set(cas: PublishedCa[], defaultId?: string | null): void } {
  let cas = initial;
  let def = defaultId;
  const listeners = new Set<() => void>();
  return {
    list: () => cas,
    defaultCa: () => cas.find((c) => c.id === def) ?? null,
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    set(next, nextDefault) {
      cas = next;
      if (nextDefault !== undefined) def = nextDefault;
      for (const l of listeners) l();
    },
  };
}
