import { AppError } from '../domain/errors.ts';
import { crlDerToPemBytes } from './verify-crl.ts';
import type { Storage } from '../app/storage-ports.ts';

/** The latest stored CRL as served over HTTP. */
export interface CrlDocument {
  crlNumber: bigint;
  thisUpdate: Date;
  nextUpdate: Date;
  /** Hex SHA-256 of the DER: the ETag. */
  sha256: string;
  der: Buffer;
  /** PEM labelled `X509 CRL`. */
  pem: Buffer;
}

export interface GetCrl {
  /** The latest stored CRL; a GET never signs one. Throws CRL_NOT_AVAILABLE before the first publication. */
  (): Promise<CrlDocument>;
  /** Hands a CRL this process just stored to the cache (saves reading tens of MB back). */
  offer(crl: { crlNumber: bigint; thisUpdate: Date; nextUpdate: Date; sha256: string; der: Buffer }): void;
}

/**
 * Serves the stored CRL with a cache keyed by its SHA-256: each call reads only the small
 * metadata row (so every replica sees a new CRL at once) and the DER only when it changed;
 * concurrent misses share one read.
 */
export function createGetCrl({ storage, issuerKeyId }: { storage: Storage; issuerKeyId: string | null }): GetCrl {
  let cached: CrlDocument | null = null;
  let loading: Promise<CrlDocument | null> | null = null;

  // The PEM is made on first use (a publisher offering its CRL should not wait for it).
  const toDocument = (crl: { crlNumber: bigint; thisUpdate: Date; nextUpdate: Date; sha256: string; der: Buffer }): CrlDocument => {
    let pem: Buffer | null = null;
    return {
      crlNumber: crl.crlNumber,
      thisUpdate: crl.thisUpdate,
      nextUpdate: crl.nextUpdate,
      sha256: crl.sha256,
      der: crl.der,
      get pem() {
        pem ??= crlDerToPemBytes(crl.der);
        return pem;
      },
    };
  };

  const load = async (): Promise<CrlDocument | null> => {
    const stored = await storage.asOperator(({ crl }) => crl.readCrl(issuerKeyId!));
    if (!stored) return null;
    const { info, der } = stored;
    if (!info.sha256 || !info.thisUpdate || !info.nextUpdate) return null;
    cached = toDocument({ crlNumber: info.crlNumber, thisUpdate: info.thisUpdate, nextUpdate: info.nextUpdate, sha256: info.sha256, der });
    return cached;
  };

  const getCrl = async (): Promise<CrlDocument> => {
    if (issuerKeyId === null) throw new AppError('CA_NOT_CONFIGURED', 'Device CA not configured');
    const info = await storage.asOperator(({ crl }) => crl.readCrlInfo(issuerKeyId));
    if (!info || !info.sha256) throw new AppError('CRL_NOT_AVAILABLE', 'no CRL has been published yet; try again shortly');
    if (cached && cached.sha256 === info.sha256) return cached;
    loading ??= load().finally(() => {
      loading = null;
    });
    const doc = await loading;
    if (!doc) throw new AppError('CRL_NOT_AVAILABLE', 'no CRL has been published yet; try again shortly');
    return doc;
  };
  // The database stays the truth: every call compares the stored SHA-256 with the cached one.
  getCrl.offer = (crl: Parameters<GetCrl['offer']>[0]) => {
    cached = toDocument(crl);
  };
  return getCrl;
}
