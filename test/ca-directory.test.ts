import { describe, expect, it } from 'vitest';
import { createDeviceCa, deviceCaFromPem } from '../src/pki/device-ca.ts';
import { caRecordFor, createStaticCaDirectory } from '../src/pki/ca-directory.ts';

async function loaded(commonName: string, init: Parameters<typeof caRecordFor>[1]) {
  const pem = await createDeviceCa({ now: new Date(), commonName });
  const ca = await deviceCaFromPem(pem.certPem, pem.keyPem);
  return { record: caRecordFor(ca, init), ca };
}

describe('static CA directory (the CaDirectory interface without storage)', () => {
  it('publishes staged, active and retiring CAs; activeFor prefers the tenant scope; onChange fires on a status change', async () => {
    const global1 = await loaded('Global CA 1', { id: 'ca_g1', status: 'retiring' });
    const global2 = await loaded('Global CA 2', { id: 'ca_g2', status: 'active' });
    const acme = await loaded('Acme CA', { id: 'ca_acme', status: 'active', tenantId: 'acme' });
    const staged = await loaded('Global CA 3', { id: 'ca_g3', status: 'staged' });
    const dir = createStaticCaDirectory([global1, global2, acme, staged]);

    expect(dir.published().map((e) => e.record.id).sort()).toEqual(['ca_acme', 'ca_g1', 'ca_g2', 'ca_g3']);
    expect(dir.activeFor('acme')?.record.id).toBe('ca_acme');
    expect(dir.activeFor('other')?.record.id).toBe('ca_g2');
    expect(dir.defaultCa()?.record.id).toBe('ca_g2');
    expect(dir.byIssuerKeyId(global1.record.issuerKeyId.toUpperCase())?.record.id).toBe('ca_g1');
    expect(dir.byIssuerLabel('Acme CA')?.record.id).toBe('ca_acme');

    let changes = 0;
    const off = dir.onChange(() => changes++);
    dir.setStatus('ca_g1', 'retired');
    dir.setStatus('ca_acme', 'revoked');
    expect(changes).toBe(2);
    expect(dir.published().map((e) => e.record.id).sort()).toEqual(['ca_g2', 'ca_g3']);
    expect(dir.activeFor('acme')?.record.id).toBe('ca_g2'); // its own CA revoked: never signs again
    expect(dir.byId('ca_g1')).toBeNull();
    expect(dir.all().map((r) => r.id).sort()).toEqual(['ca_acme', 'ca_g1', 'ca_g2', 'ca_g3']);
    off();
    dir.setStatus('ca_g3', 'active');
    expect(changes).toBe(2);
  });
});
