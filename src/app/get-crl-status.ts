import { AppError } from '../domain/errors.ts';
import type { Storage } from './storage-ports.ts';

export interface CrlStatus {
  crl_number: string;
  entries: number | null;
  this_update: string | null;
  next_update: string | null;
  sha256: string | null;
  bytes: number | null;
  published_at: string | null;
}

/** The latest stored CRL's metadata (no DER read), for the console. */
export function createGetCrlStatus({ storage, issuerKeyId }: { storage: Storage; issuerKeyId: string | null }) {
  return async (): Promise<CrlStatus> => {
    if (issuerKeyId === null) throw new AppError('CA_NOT_CONFIGURED', 'Device CA not configured');
    const info = await storage.asOperator(({ crl }) => crl.readCrlInfo(issuerKeyId));
    if (!info) throw new AppError('CRL_NOT_AVAILABLE', 'no CRL has been published yet; try again shortly');
    return {
      crl_number: info.crlNumber.toString(),
      entries: info.entries,
      this_update: info.thisUpdate?.toISOString() ?? null,
      next_update: info.nextUpdate?.toISOString() ?? null,
      sha256: info.sha256,
      bytes: info.bytes,
      published_at: info.publishedAt?.toISOString() ?? null,
    };
  };
}
