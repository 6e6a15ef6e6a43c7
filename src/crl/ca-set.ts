/**
 * The CAs the CRL pipeline publishes and the brokers trust, read from the CA directory
 * (src/pki/ca-directory.ts: the records, their statuses and scopes, keys loaded).
 *
 * - staged, active, retiring (the directory's published()): the trust set. Each has its own CRL
 *   (own number series, the crl_state row of its key id), served at /pki/ca/{id}/crl, listed in
 *   the broker's CRL file and the CRL bundle; its certificate is in /pki/cas.pem, EST /cacerts
 *   and the broker's cafile.
 * - retired: no new CRL is built. The last one stays served at /pki/ca/{id}/crl (valid until its
 *   nextUpdate; by then the CA's certificates have expired or been revoked). The CA leaves the
 *   broker's cafile, then its CRL leaves the crlfile: the broker refuses its certificates.
 * - revoked: the same, at once: every certificate it issued is refused by the brokers, whatever
 *   its CN. Its last CRL stays served too (it is the CA's own statement; relying parties must
 *   stop trusting the CA itself).
 */
import type { CaDirectory } from '../pki/ca-directory.ts';
import type { DeviceCa } from '../pki/device-ca.ts';
import type { CaStatus } from '../domain/ca.ts';
import { isPublishedCaStatus } from '../domain/ca.ts';
import type { Config } from '../config.ts';
import { x509 } from '../pki/x509.ts';

export interface PublishedCa {
  /** The CA's id: /pki/ca/{id}.pem, /pki/ca/{id}/crl. */
  id: string;
  status: CaStatus;
  /** null: global scope. */
  tenantId: string | null;
  /** The loaded CA (trusted ones only: retired and revoked CAs have no key loaded). */
  ca: DeviceCa | null;
  certPem: string;
  notBefore: Date;
  /** Hex key id (SKI): the crl_state row. */
  issuerKeyId: string;
  /** The CRL URL its certificates carry (and its served CRL's Issuing Distribution Point). */
  distributionPointUrl: string;
}

export const isTrusted = (ca: Pick<PublishedCa, 'status'>): boolean => isPublishedCaStatus(ca.status);

/**
 * The CRL distribution point a CA's certificates carry: `/pki/ca/{id}/crl`. The CA of
 * DEVICE_CA_CERT_PATH (`legacyIssuerKeyId`, the one CA before CAs became records) keeps
 * `/pki/crl`, the URL its certificates already carry (OpenSSL refuses a CRL whose Issuing
 * Distribution Point differs from the certificate's CDP as "different CRL scope").
 * CA records store it (`crlDistributionPoint`); this is the rule they follow.
 */
export function caDistributionPointUrl(config: Pick<Config, 'publicBaseUrl'>, ca: { id: string; issuerKeyId: string }, legacyIssuerKeyId: string | null): string {
  return ca.issuerKeyId === legacyIssuerKeyId ? `${config.publicBaseUrl}/pki/crl` : `${config.publicBaseUrl}/pki/ca/${encodeURIComponent(ca.id)}/crl`;
}

/** What the publication reads of the directory. */
export interface CaSource {
  /** Every CA: the trusted ones (keys loaded) and the retired/revoked ones (their last CRL still served). */
  list(): PublishedCa[];
  /** The default scope's active CA: what /pki/ca.pem and /pki/crl serve. */
  defaultCa(): PublishedCa | null;
  onChange(listener: () => void): () => void;
}

export function caSourceOf(directory: CaDirectory): CaSource {
  const list = (): PublishedCa[] => {
    const loaded = new Map(directory.published().map((e) => [e.record.id, e.ca]));
    return directory.all().map((r) => ({
      id: r.id,
      status: r.status,
      tenantId: r.tenantId,
      ca: loaded.get(r.id) ?? null,
      certPem: r.certPem,
      notBefore: r.notBefore,
      issuerKeyId: r.issuerKeyId,
      // Chosen when the CA was created or imported (ca records): the CDP its certificates carry.
      distributionPointUrl: r.crlDistributionPoint,
    }));
  };
  return {
    list,
    defaultCa: () => {
      const d = directory.defaultCa();
      return d ? (list().find((c) => c.id === d.record.id) ?? null) : null;
    },
    onChange: (listener) => directory.onChange(listener),
  };
}

/** One CA from the configuration (DEVICE_CA_CERT_PATH): active, global, `/pki/crl`. */
export function staticCaSource(ca: DeviceCa | null, config: Pick<Config, 'publicBaseUrl'>): CaSource {
  const id = ca ? ca.subjectKeyId.toString('hex') : '';
  const entry: PublishedCa | null = ca
    ? {
        id,
        status: 'active',
        tenantId: null,
        ca,
        certPem: ca.certPem,
        notBefore: new x509.X509Certificate(ca.certPem).notBefore,
        issuerKeyId: id,
        distributionPointUrl: caDistributionPointUrl(config, { id, issuerKeyId: id }, id),
      }
    : null;
  return { list: () => (entry ? [entry] : []), defaultCa: () => entry, onChange: () => () => undefined };
}
