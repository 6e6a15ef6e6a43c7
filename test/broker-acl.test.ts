/**
 * The broker ACL certfleet writes in acl_file mode, against a real Mosquitto 2.0 and real clients:
 * the adversarial identity matrix of test/support/acl-matrix.ts (the certfleet_acl plugin mode runs
 * the same matrix in test/broker-acl-plugin.test.ts). None of the attackers' messages may be
 * delivered to or accepted from another identity. Positive controls: each registered identity
 * receives its own topic, tenant A's devices read tenant A's broadcast grant (and cannot write
 * it), and the observer sees every source message (so "nothing arrived" is not a dead broker).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Attacker, BROADCAST_A, type MatrixRun, own, runMatrix } from './support/acl-matrix.ts';

let run: MatrixRun;
let aclText: string;
let attackers: Attacker[];
let observed: string[];

beforeAll(async () => {
  run = await runMatrix('acl_file');
  ({ attackers, observed } = run);
  aclText = run.writtenText;
}, 120_000);

afterAll(async () => {
  await run?.close();
}, 60_000);

describe('broker ACL matrix (real Mosquitto, the acl_file certfleet writes)', () => {
  it('renders default deny: renewal patterns for everyone, one block per registered device, no permissive line', () => {
    expect(aclText).not.toMatch(/^pattern readwrite/m);
    expect(aclText.match(/^pattern /gm)).toHaveLength(3);
    expect(aclText).toContain('pattern read certfleet/renew/%u/advice');
    expect(aclText).toContain('pattern write certfleet/renew/%u/request\npattern read certfleet/renew/%u/response');
    expect(aclText).toContain('user TA/VICTIM\ntopic readwrite tenant/TA/device/VICTIM/#\ntopic read tenant/TA/broadcast/#');
    expect(aclText).toContain('user TB/dev-b\ntopic readwrite tenant/TB/device/dev-b/#\n');
    // Every device line starts with tenant/: none can produce certfleet/... or $...
    const deviceLines = aclText.split('user certfleet-admin')[1].split('\n').filter((l) => l.startsWith('topic ') && !l.includes('$CONTROL') && !l.includes('certfleet/renew/+/+') && !l.includes('certfleet/recover/'));
    const afterAdmin = deviceLines.slice(2); // admin: tenant/# read, (test) readwrite #
    expect(afterAdmin.every((l) => /^topic (read|readwrite) tenant\//.test(l))).toBe(true);
  });

  it('every adversarial identity connected (the broker took its certificate), so the matrix is not vacuous', () => {
    const failed = attackers.filter((a) => !a.client).map((a) => `${a.commonName}: ${a.connectError}`);
    // Mosquitto refuses no CN at connect; if one day it does, that identity is safer still, but the test would not prove the ACL.
    expect(failed).toEqual([]);
  });

  it('no identity publishes to another device’s application or renewal topics, certfleet’s topics or $CONTROL', () => {
    const accepted = attackers.flatMap((a) => a.published.filter((p) => p.accepted).map((p) => `${a.commonName} -> ${p.topic}`));
    expect(accepted).toEqual([]);
    expect(observed.filter((m) => m.startsWith('attack|'))).toEqual([]);
  });

  it('no identity receives another device’s, another tenant’s or certfleet’s messages, whatever it subscribed to', () => {
    const leaked = attackers.flatMap((a) =>
      a.received
        .filter((m) => m.payload.startsWith('source|'))
        .filter((m) => !(a.registered && m.topic === own(a.registered)))
        .filter((m) => !(a.registered?.tenantId === 'TA' && m.topic === BROADCAST_A))
        .map((m) => `${a.commonName} <- ${m.topic}`),
    );
    expect(leaked).toEqual([]);
  });

  it('positive controls: each registered identity gets its own topic; tenant A’s devices read A’s broadcast, no one else does', () => {
    for (const a of attackers.filter((x) => x.registered)) {
      const topics = a.received.map((m) => m.topic);
      expect(topics, a.commonName).toContain(own(a.registered!));
      expect(topics.includes(BROADCAST_A), a.commonName).toBe(a.registered!.tenantId === 'TA');
    }
    for (const a of attackers.filter((x) => !x.registered)) expect(a.received, a.commonName).toEqual([]);
  });

  it('tenant isolation: tenant B’s device subscribed to # sees nothing of tenant A, and its publish to A’s command topic is not delivered', () => {
    const spy = attackers.find((a) => a.commonName === 'TB/spy')!;
    expect(spy.subscribed.find((s) => s.topic === '#')).toBeDefined();
    expect(spy.received.filter((m) => m.topic.startsWith('tenant/TA/'))).toEqual([]);
    expect([...new Set(spy.received.map((m) => m.topic))]).toEqual([own(spy.registered!)]); // a copy per matching subscription
    expect(spy.published.find((p) => p.topic === 'tenant/TA/device/VICTIM/cmd')?.accepted).toBe(false);
    expect(observed).not.toContain('attack|TB/spy|tenant/TA/device/VICTIM/cmd');
    // A device of tenant A cannot reach another device of A either.
    for (const name of ['TA/device', 'TA/VICTI', 'TA/VICTIM.']) {
      const a = attackers.find((x) => x.commonName === name)!;
      expect(a.published.filter((p) => p.topic.startsWith('tenant/TA/device/') && p.accepted), name).toEqual([]);
      expect(a.received.filter((m) => m.topic.startsWith('tenant/TA/device/VICTIM/') || m.topic.startsWith('tenant/TA/device/other/')), name).toEqual([]);
    }
    const tenantAs = attackers.filter((a) => a.registered?.tenantId === 'TA');
    for (const a of tenantAs) expect(a.published.find((p) => p.topic === BROADCAST_A)?.accepted, `${a.commonName} writes the read-only broadcast`).toBe(false);
  });
});
