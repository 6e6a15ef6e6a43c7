/**
 * The certfleet_acl broker plugin (broker-plugin/certfleet_acl.c), loaded by a real Mosquitto 2.0
 * as broker-config writes it (before the dynamic security plugin, no acl_file), against real
 * clients: the adversarial identity matrix of test/support/acl-matrix.ts, then what plugin mode
 * adds: subscriptions outside a device's scope are refused (not only filtered), the combination
 * with the dynamic security plugin stays deny-by-default even when that plugin's default access is
 * opened, tenant grants come from the grants file and follow it on reload, certfleet's admin keeps
 * its topics, and a device registered after the broker started needs no reload.
 */
import { writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt, { type MqttClient } from 'mqtt';
import {
  type Attacker,
  BROADCAST_A,
  type MatrixRun,
  UNREGISTERED_CNS,
  WILDCARDS,
  dynsecCommand,
  own,
  publishQos1,
  runMatrix,
  subscribeCodes,
  waitFor,
} from './support/acl-matrix.ts';

let run: MatrixRun;
let attackers: Attacker[];
let observed: string[];
const RESERVED_TENANT = 'certfleet';
const extraClients: MqttClient[] = [];

beforeAll(async () => {
  run = await runMatrix('plugin');
  ({ attackers, observed } = run);
}, 120_000);

afterAll(async () => {
  for (const c of extraClients) await c.endAsync(true).catch(() => undefined);
  await run?.close();
}, 60_000);

/** A device connection of the matrix's Device CA, with its received messages. */
async function device(name: string, commonName: string) {
  const client = await run.connectDevice(await run.issue(name, commonName));
  extraClients.push(client);
  const received: Array<{ topic: string; payload: string }> = [];
  client.on('message', (topic, payload) => received.push({ topic, payload: payload.toString() }));
  return { client, received };
}

const grantedQos = async (client: MqttClient, topic: string) => (await subscribeCodes(client, [topic], 1))[0].qos;

describe('broker ACL matrix (real Mosquitto, the certfleet_acl plugin)', () => {
  it('is configured as broker-config writes it: the plugin before the dynamic security plugin, no acl_file, a grants file without devices', () => {
    const conf = run.configText;
    expect(conf).not.toMatch(/^acl_file /m);
    const plugins = conf.split('\n').filter((l) => l.startsWith('plugin '));
    expect(plugins).toHaveLength(2);
    expect(plugins[0]).toMatch(/certfleet_acl\.so$/);
    expect(plugins[1]).toMatch(/mosquitto_dynamic_security\.so$/);
    expect(conf).toMatch(/^plugin_opt_admin_username certfleet-admin$/m);
    expect(conf).toMatch(/^plugin_opt_renewal_topics true$/m);
    expect(conf).toMatch(/^plugin_opt_reserved_tenant certfleet$/m);
    const grants = run.writtenText.split('\n').filter((l) => l && !l.startsWith('#'));
    expect(grants).toEqual(['TA read broadcast/#']);
    expect(run.broker.logs()).toMatch(/certfleet_acl: devices confined .* 1 grant\(s\) of 1 tenant\(s\)/);
  });

  it('every adversarial identity connected (the broker took its certificate), so the matrix is not vacuous', () => {
    expect(attackers.filter((a) => !a.client).map((a) => `${a.commonName}: ${a.connectError}`)).toEqual([]);
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
        .filter((m) => !(a.registered && a.registered.tenantId !== RESERVED_TENANT && m.topic === own(a.registered)))
        .filter((m) => !(a.registered?.tenantId === 'TA' && m.topic === BROADCAST_A))
        .map((m) => `${a.commonName} <- ${m.topic}`),
    );
    expect(leaked).toEqual([]);
  });

  it('every subscription outside the device’s own subtree and its tenant’s read grants is refused (SUBACK 0x87), wildcards above it included', () => {
    for (const a of attackers) {
      const allowed = new Set<string>();
      if (a.registered && a.registered.tenantId !== RESERVED_TENANT) allowed.add(own(a.registered));
      if (a.registered?.tenantId === 'TA') allowed.add(BROADCAST_A);
      const granted = a.subscribed.filter((s) => s.qos < 128).map((s) => s.topic);
      expect(granted.sort(), a.commonName).toEqual([...allowed].sort());
      expect(a.subscribed.length, a.commonName).toBe(WILDCARDS.length + (a.registered ? 1 : 0));
    }
  });

  it('positive controls: each valid identity gets its own topic (not certfleet’s reserved tenant), tenant A’s devices read A’s broadcast; invalid CNs get nothing', () => {
    for (const a of attackers.filter((x) => x.registered)) {
      const topics = a.received.map((m) => m.topic);
      expect(topics.includes(own(a.registered!)), a.commonName).toBe(a.registered!.tenantId !== RESERVED_TENANT);
      expect(topics.includes(BROADCAST_A), a.commonName).toBe(a.registered!.tenantId === 'TA');
    }
    const invalid = attackers.filter((x) => !x.registered);
    expect(invalid.map((a) => a.commonName).sort()).toEqual([...UNREGISTERED_CNS].sort());
    for (const a of invalid) {
      expect(a.received, a.commonName).toEqual([]);
      expect(a.subscribed.filter((s) => s.qos < 128), a.commonName).toEqual([]);
    }
  });

  it('tenant isolation: tenant B’s device cannot subscribe to #, sees nothing of tenant A, and its publish to A’s command topic is refused', () => {
    const spy = attackers.find((a) => a.commonName === 'TB/spy')!;
    expect(spy.subscribed.find((s) => s.topic === '#')?.qos).toBe(0x87);
    expect(spy.received.filter((m) => m.topic.startsWith('tenant/TA/'))).toEqual([]);
    expect([...new Set(spy.received.map((m) => m.topic))]).toEqual([own(spy.registered!)]);
    expect(spy.published.find((p) => p.topic === 'tenant/TA/device/VICTIM/cmd')?.accepted).toBe(false);
    for (const name of ['TA/device', 'TA/VICTI', 'TA/VICTIM.']) {
      const a = attackers.find((x) => x.commonName === name)!;
      expect(a.published.filter((p) => p.topic.startsWith('tenant/TA/device/') && p.accepted), name).toEqual([]);
      expect(a.received.filter((m) => m.topic.startsWith('tenant/TA/device/VICTIM/') || m.topic.startsWith('tenant/TA/device/other/')), name).toEqual([]);
    }
    for (const a of attackers.filter((x) => x.registered?.tenantId === 'TA')) {
      expect(a.published.find((p) => p.topic === BROADCAST_A)?.accepted, `${a.commonName} writes the read-only broadcast`).toBe(false);
    }
  });

  it('a device uses its own subtree and renewal topics, and nothing of another device, with no registration and no broker reload', async () => {
    const reloadsBefore = (run.broker.logs().match(/Reloading config/g) ?? []).length;
    // TC/new-device is in no file the broker has read: the plugin derives its topics from the CN.
    const fresh = await device('fresh', 'TC/new-device');
    expect(await grantedQos(fresh.client, 'tenant/TC/device/new-device/#')).toBe(1);
    expect(await grantedQos(fresh.client, 'certfleet/renew/TC/new-device/response')).toBe(1);
    expect(await grantedQos(fresh.client, 'certfleet/renew/TC/new-device/request')).toBe(0x87); // write-only
    expect(await grantedQos(fresh.client, 'tenant/TC/device/+/telemetry')).toBe(0x87);
    expect(await grantedQos(fresh.client, 'tenant/TC/+/new-device/#')).toBe(0x87);
    expect(await publishQos1(fresh.client, 'tenant/TC/device/new-device/telemetry', 'own')).toBe(true);
    expect(await publishQos1(fresh.client, 'tenant/TC/device/new-device', 'own root')).toBe(true);
    expect(await publishQos1(fresh.client, 'certfleet/renew/TC/new-device/request', 'csr')).toBe(true);
    expect(await publishQos1(fresh.client, 'certfleet/renew/TC/new-device/response', 'forged')).toBe(false);
    expect(await publishQos1(fresh.client, 'tenant/TC/device/new-device2/telemetry', 'prefix of another id')).toBe(false);
    expect(await publishQos1(fresh.client, 'tenant/TC/device', 'above')).toBe(false);
    await waitFor(() => fresh.received.some((m) => m.payload === 'own'), 'the device to receive its own message');
    await run.observer.publishAsync('certfleet/renew/TC/new-device/response', 'certificate', { qos: 1 });
    await waitFor(() => fresh.received.some((m) => m.topic === 'certfleet/renew/TC/new-device/response'), 'the renewal response');
    expect(observed).toContain('csr');
    expect(observed).not.toContain('forged');
    expect((run.broker.logs().match(/Reloading config/g) ?? []).length).toBe(reloadsBefore);
  });

  it('deny by default with the dynamic security plugin: opening its default access (and a client named like a device) gives devices nothing more', async () => {
    const opened = await dynsecCommand(run.broker.adminPort as number, run.adminPassword, {
      command: 'setDefaultACLAccess',
      acls: [
        { acltype: 'publishClientSend', allow: true },
        { acltype: 'publishClientReceive', allow: true },
        { acltype: 'subscribe', allow: true },
        { acltype: 'unsubscribe', allow: true },
      ],
    });
    expect(opened.error).toBeUndefined();
    const named = await dynsecCommand(run.broker.adminPort as number, run.adminPassword, { command: 'createClient', username: 'TB/spy2', password: 'x', roles: [{ rolename: 'admin' }] });
    expect(named.error).toBeUndefined();
    try {
      for (const cnName of ['TB/spy2', 'TB/other-spy', '+/#']) {
        const spy = await device(`dynsec-${cnName.replace(/\W/g, '_')}`, cnName);
        expect(await grantedQos(spy.client, '#'), cnName).toBe(0x87);
        expect(await grantedQos(spy.client, 'tenant/TA/device/VICTIM/#'), cnName).toBe(0x87);
        expect(await grantedQos(spy.client, '$CONTROL/dynamic-security/#'), cnName).toBe(0x87);
        expect(await publishQos1(spy.client, 'tenant/TA/device/VICTIM/cmd', 'x'), cnName).toBe(false);
        expect(await publishQos1(spy.client, '$CONTROL/dynamic-security/v1', '{"commands":[]}'), cnName).toBe(false);
        expect(await publishQos1(spy.client, 'unclaimed/topic', 'x'), cnName).toBe(false);
      }
    } finally {
      await dynsecCommand(run.broker.adminPort as number, run.adminPassword, { command: 'deleteClient', username: 'TB/spy2' });
      await dynsecCommand(run.broker.adminPort as number, run.adminPassword, {
        command: 'setDefaultACLAccess',
        acls: [
          { acltype: 'publishClientSend', allow: false },
          { acltype: 'publishClientReceive', allow: true },
          { acltype: 'subscribe', allow: false },
          { acltype: 'unsubscribe', allow: true },
        ],
      });
    }
  });

  it('tenant grants follow the grants file on reload (SIGHUP); an invalid file keeps the grants in force', async () => {
    const spy = await device('grants-tb', 'TB/grantee');
    expect(await publishQos1(spy.client, 'tenant/TB/uplink/a', 'before')).toBe(false);
    const grantsFile = run.configText.match(/^plugin_opt_grants_file (.+)$/m)![1];
    await writeFile(grantsFile, 'TA read broadcast/#\nTB write uplink/#\nTB readwrite chat/+/room\n');
    let offset = run.broker.logs().length;
    process.kill(run.broker.pid, 'SIGHUP');
    await run.broker.waitForLog(/certfleet_acl: reload: 3 grant\(s\) of 2 tenant\(s\)/, 30_000, offset);
    expect(await publishQos1(spy.client, 'tenant/TB/uplink/a', 'after')).toBe(true);
    expect(await grantedQos(spy.client, 'tenant/TB/uplink/#')).toBe(0x87); // write grant: no subscription
    expect(await grantedQos(spy.client, 'tenant/TB/chat/x/room')).toBe(1);
    expect(await grantedQos(spy.client, 'tenant/TB/chat/+/room')).toBe(1);
    expect(await grantedQos(spy.client, 'tenant/TB/chat/#')).toBe(0x87); // wider than the grant
    expect(await publishQos1(spy.client, 'tenant/TA/uplink/a', 'other tenant')).toBe(false);

    // A grant certfleet would refuse (another device's subtree) makes the whole file invalid: the previous grants stay.
    await writeFile(grantsFile, 'TB readwrite device/#\n');
    offset = run.broker.logs().length;
    process.kill(run.broker.pid, 'SIGHUP');
    await run.broker.waitForLog(/certfleet_acl: reload: the grants file could not be used; the previous grants stay in force/, 30_000, offset);
    expect(run.broker.logs().slice(offset)).toMatch(/line 1: invalid grant filter/);
    expect(await publishQos1(spy.client, 'tenant/TB/uplink/a', 'still')).toBe(true);
    expect(await publishQos1(spy.client, 'tenant/TB/device/dev-b/cmd', 'x')).toBe(false);
  });

  it('certfleet’s admin keeps its acl_file topics (read tenant/#, renewal requests, write responses, $CONTROL) and nothing the dynamic security plugin does not grant', async () => {
    // The test's extra role ACL off (the dynamic security plugin disconnects the role's clients): the admin as certfleet configures it.
    const removed = await dynsecCommand(run.broker.adminPort as number, run.adminPassword, { command: 'removeRoleACL', rolename: 'admin', acltype: 'publishClientSend', topic: '#' });
    expect(removed.error).toBeUndefined();
    const admin = await mqtt.connectAsync(`mqtt://127.0.0.1:${run.broker.adminPort}`, { username: 'certfleet-admin', password: run.adminPassword, protocolVersion: 5, reconnectPeriod: 0 });
    extraClients.push(admin);
    const seen: string[] = [];
    admin.on('message', (topic) => seen.push(topic));
    expect(await grantedQos(admin, 'tenant/#')).toBe(1);
    expect(await grantedQos(admin, 'certfleet/renew/+/+/request')).toBe(1);
    const dev = await device('admin-peer', 'TD/dev');
    expect(await publishQos1(dev.client, 'tenant/TD/device/dev/telemetry', 't')).toBe(true);
    expect(await publishQos1(dev.client, 'certfleet/renew/TD/dev/request', 'r')).toBe(true);
    await waitFor(() => seen.includes('tenant/TD/device/dev/telemetry') && seen.includes('certfleet/renew/TD/dev/request'), 'the admin to read telemetry and the request');
    expect(await publishQos1(admin, 'certfleet/renew/TD/dev/response', 'answer')).toBe(true);
    expect(await publishQos1(admin, 'tenant/TD/device/dev/cmd', 'not the admin’s')).toBe(false);
    expect(await publishQos1(admin, 'certfleet/renew/TD/dev/request', 'not the admin’s')).toBe(false);
  });
});

