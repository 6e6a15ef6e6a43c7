import type { Config } from '../config.ts';
import { createCrlPublication } from '../composition/crl.ts';
import { openStorage } from '../composition/open-storage.ts';
import type { DeviceCa } from '../pki/device-ca.ts';
import { createBrokerReloader } from '../broker/broker-reloader.ts';

/**
 * Puts the current CRL at CRL_OUTPUT_PATH through the CRL publisher, so Mosquitto can start:
 * the stored one when there is one (numbering and content stay those of the service), else the
 * first CRL, built, verified and stored like every later one. No broker is reloaded (none runs yet).
 */
export async function publishInitialCrl(config: Config, ca: DeviceCa): Promise<string> {
  const storage = await openStorage(config);
  try {
    const crl = createCrlPublication({ config, storage, ca, publish: true, refreshTimer: false, reloader: createBrokerReloader({}) });
    try {
      // A database restored from an older backup must not overwrite the broker's file with a CRL lacking revocations.
      await crl.reconcile();
      const result = await crl.publisher!.publishIfStale();
      return `CRL number ${result.crlNumber}, ${result.entries ?? 0} revoked ${result.entries === 1 ? 'certificate' : 'certificates'}${result.published ? '' : ', the one already stored'}`;
    } finally {
      await crl.stop();
    }
  } finally {
    await storage.close();
  }
}
