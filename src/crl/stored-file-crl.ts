import { completeCrlOf } from '../domain/crl/complete-crl.ts';
import type { Database } from '../storage/database.ts';
import { readCrlForFile } from '../storage/repos/crl-repo.ts';

/**
 * The latest stored CRL as the broker's file has it (no Issuing Distribution Point), for a file sync
 * when another replica published; a CRL stored before file signatures existed is used as it is.
 */
export const storedFileCrlLoader = (db: Database, issuerKeyId: string) => async (): Promise<Buffer | null> => {
  const stored = await db.asOperator((tx) => readCrlForFile(tx, issuerKeyId));
  return stored && (stored.fileSignature ? completeCrlOf(stored.der, stored.fileSignature) : stored.der);
};
