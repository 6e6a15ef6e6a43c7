/**
 * deploy/kubernetes/: every manifest parses and is checked offline (no cluster here): every
 * environment variable is one certfleet reads (derived from its source), ports and probe paths
 * match the service (the probe paths are asked of a running service), every long-running
 * container runs as non-root without privilege escalation, secrets come from Secret references
 * and are never inlined, and the broker's container sees neither the Device CA key nor the
 * server CA key while its sidecar signals it with the same uid in a shared PID namespace.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';
import { environmentVariablesRead } from './support/env-names.ts';

const ROOT = join(import.meta.dirname, '..');
const DIR = join(ROOT, 'deploy', 'kubernetes');

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string }; configMapKeyRef?: unknown };
}
interface Probe {
  httpGet?: { path: string; port: number | string };
  tcpSocket?: { port: number | string };
}
interface Mount {
  name: string;
  mountPath: string;
  subPath?: string;
  readOnly?: boolean;
}
interface SecurityContext {
  runAsNonRoot?: boolean;
  runAsUser?: number;
  allowPrivilegeEscalation?: boolean;
  readOnlyRootFilesystem?: boolean;
  capabilities?: { drop?: string[]; add?: string[] };
}
interface Container {
  name: string;
  image: string;
  args?: string[];
  command?: string[];
  env?: EnvVar[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  ports?: { name?: string; containerPort: number }[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  securityContext?: SecurityContext;
  resources?: { requests?: { cpu?: string; memory?: string }; limits?: { memory?: string } };
  volumeMounts?: Mount[];
}
interface PodSpec {
  shareProcessNamespace?: boolean;
  securityContext?: SecurityContext & { fsGroup?: number; runAsGroup?: number };
  initContainers?: Container[];
  containers: Container[];
  volumes?: { name: string; secret?: { secretName: string }; configMap?: { name: string }; emptyDir?: unknown }[];
}
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  data?: Record<string, string>;
  stringData?: Record<string, string>;
  spec?: { template?: { spec: PodSpec }; jobTemplate?: unknown };
}

const files = readdirSync(DIR).filter((f) => /\.ya?ml$/.test(f));
const manifests: (Manifest & { file: string })[] = files.flatMap((file) =>
  parseAllDocuments(readFileSync(join(DIR, file), 'utf8')).map((doc) => {
    expect(doc.errors, file).toEqual([]);
    return { ...(doc.toJS() as Manifest), file };
  }),
);
const workloads = manifests.filter((m) => m.spec?.template?.spec);
const pod = (name: string) => workloads.find((m) => m.metadata.name === name)!.spec!.template!.spec;
const configMaps = new Map(manifests.filter((m) => m.kind === 'ConfigMap').map((m) => [m.metadata.name, m.data ?? {}]));
const isCertfleet = (c: Container) => c.image === 'certfleet';
const allContainers = (p: PodSpec) => [...(p.initContainers ?? []), ...p.containers];
/** Variables that hold secrets themselves (not the path of a file holding one). */
const SECRET_VALUE = /(SECRET_KEY|SECRET_KEY_PREVIOUS|PASSWORD|TOKEN|PASSPHRASE|DATABASE_URL|PIN)$/;

/** Every variable a container gets: its env and the keys of the ConfigMaps it takes whole. */
function environment(c: Container): Map<string, EnvVar> {
  const out = new Map<string, EnvVar>();
  for (const from of c.envFrom ?? []) {
    expect(from.secretRef, `${c.name}: envFrom a whole Secret hides what it sets`).toBeUndefined();
    const data = configMaps.get(from.configMapRef!.name);
    expect(data, `${c.name}: ConfigMap ${from.configMapRef!.name} is in the manifests`).toBeDefined();
    for (const [name, value] of Object.entries(data!)) out.set(name, { name, value });
  }
  for (const e of c.env ?? []) out.set(e.name, e);
  return out;
}

describe('deploy/kubernetes manifests', () => {
  it('parse, and hold the API, the worker, the broker with its sidecar and the migration job', () => {
    expect(files.length).toBeGreaterThan(3);
    const kinds = manifests.map((m) => `${m.kind}/${m.metadata?.name}`);
    for (const k of ['Deployment/certfleet-api', 'Service/certfleet-api', 'Deployment/certfleet-worker', 'StatefulSet/mosquitto', 'Job/certfleet-migrate']) expect(kinds).toContain(k);
    const kustomization = manifests.find((m) => m.kind === 'Kustomization') as unknown as { resources: string[] };
    expect([...kustomization.resources].sort()).toEqual(files.filter((f) => f !== 'kustomization.yaml').sort());
    expect(pod('certfleet-api').containers[0].args).toEqual(['api']);
    expect(pod('certfleet-worker').containers[0].args).toEqual(['worker', '--metrics-port', '9464']);
    expect(pod('mosquitto').containers.map((c) => c.name).sort()).toEqual(['crl-sidecar', 'mosquitto', 'reloader']);
  });

  it('sets only environment variables certfleet reads (derived from src/)', () => {
    const known = environmentVariablesRead(join(ROOT, 'src'));
    // the derivation finds what it must (a broken scan would let everything through)
    for (const name of ['DATABASE_URL', 'PORT', 'WEBHOOK_SECRET_KEY', 'CRL_REFRESH_MINUTES', 'BROKER_PID_FILE']) expect(known).toContain(name);
    expect(known).not.toContain('DATABASE_URI');
    const unknown: string[] = [];
    for (const m of workloads) {
      for (const c of allContainers(m.spec!.template!.spec).filter(isCertfleet)) {
        for (const name of environment(c).keys()) if (!known.has(name)) unknown.push(`${m.file} ${c.name}: ${name}`);
      }
    }
    expect(unknown).toEqual([]);
  });

  it('never inlines a secret: no Secret object, secret values only through secretKeyRef', () => {
    expect(manifests.filter((m) => m.kind === 'Secret')).toEqual([]);
    const inlined: string[] = [];
    for (const [name, data] of configMaps) for (const key of Object.keys(data)) if (SECRET_VALUE.test(key)) inlined.push(`ConfigMap ${name}: ${key}`);
    for (const m of workloads) {
      for (const c of allContainers(m.spec!.template!.spec)) {
        for (const e of c.env ?? []) if (SECRET_VALUE.test(e.name) && !e.valueFrom?.secretKeyRef) inlined.push(`${m.file} ${c.name}: ${e.name}`);
      }
    }
    expect(inlined).toEqual([]);
    // the CA key reaches the containers as a file from the Secret, installed 0600
    for (const name of ['certfleet-api', 'certfleet-worker', 'mosquitto']) {
      expect(pod(name).volumes!.find((v) => v.name === 'device-ca')?.secret?.secretName, name).toBe('certfleet-device-ca');
    }
  });

  it('runs every long-running container as non-root, without privilege escalation, all capabilities dropped, with resource requests', () => {
    for (const m of workloads) {
      const p = m.spec!.template!.spec;
      expect(p.securityContext?.runAsNonRoot, m.metadata.name).toBe(true);
      expect(p.securityContext?.runAsUser, m.metadata.name).toBeGreaterThan(0);
      for (const c of allContainers(p)) {
        const where = `${m.metadata.name}/${c.name}`;
        expect(c.securityContext?.allowPrivilegeEscalation, where).toBe(false);
        expect(c.securityContext?.readOnlyRootFilesystem, where).toBe(true);
        expect(c.securityContext?.capabilities?.drop, where).toEqual(['ALL']);
        expect(c.resources?.requests?.cpu && c.resources?.requests?.memory, where).toBeTruthy();
        expect(c.resources?.limits?.memory, where).toBeTruthy();
      }
      for (const c of p.containers) {
        expect(c.securityContext?.runAsUser ?? p.securityContext!.runAsUser, `${m.metadata.name}/${c.name}`).not.toBe(0);
        expect(c.securityContext?.capabilities?.add ?? [], `${m.metadata.name}/${c.name}`).toEqual([]);
      }
      // The one root step: an init container that only installs key files, with CHOWN alone.
      for (const c of (p.initContainers ?? []).filter((x) => x.securityContext?.runAsUser === 0)) {
        expect(c.securityContext?.capabilities?.add, c.name).toEqual(['CHOWN']);
        const script = (c.args ?? []).join('\n').trim().split('\n');
        expect(script.every((line) => /^install /.test(line.trim())), `${m.metadata.name}/${c.name} runs only install`).toBe(true);
      }
    }
  });

  describe('ports and probes against a running service', () => {
    let database: TestDatabase;
    let t: TestService;
    beforeAll(async () => {
      database = await createTestDatabase('pglite');
      t = await startTestService(database);
    });
    afterAll(async () => {
      await t?.close();
      await database?.close();
    });

    it('the API listens on PORT, its Service targets it, and its probes ask /healthz and /readyz, which answer 200', async () => {
      const api = pod('certfleet-api').containers[0];
      const env = environment(api);
      const port = api.ports!.find((p) => p.name === 'http')!;
      expect(String(port.containerPort)).toBe(env.get('PORT')!.value);
      const service = manifests.find((m) => m.kind === 'Service' && m.metadata.name === 'certfleet-api') as unknown as { spec: { ports: { targetPort: string }[] } };
      expect(service.spec.ports[0].targetPort).toBe('http');
      expect(api.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'http' });
      expect(api.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'http' });
      for (const probe of [api.livenessProbe, api.readinessProbe, api.startupProbe]) {
        const res = await t.service.app.inject({ method: 'GET', url: probe!.httpGet!.path });
        expect(res.statusCode, probe!.httpGet!.path).toBe(200);
      }
    });

    it('a worker listens on its --metrics-port, which its probes check', () => {
      for (const c of [pod('certfleet-worker').containers[0], pod('mosquitto').containers.find((x) => x.name === 'crl-sidecar')!]) {
        const port = Number(c.args![c.args!.indexOf('--metrics-port') + 1]);
        expect(c.ports!.find((p) => p.name === 'metrics')?.containerPort, c.name).toBe(port);
        expect(c.livenessProbe?.tcpSocket?.port, c.name).toBe('metrics');
        expect(environment(c).get('HOST')?.value, `${c.name}: metrics reachable from the kubelet`).toBe('0.0.0.0');
      }
    });
  });

  it('the broker: a reloader with its uid signals it in a shared PID namespace; the sidecar holding the keys has another uid; its container mounts no CA key', () => {
    const p = pod('mosquitto');
    expect(p.shareProcessNamespace).toBe(true);
    const broker = p.containers.find((c) => c.name === 'mosquitto')!;
    const sidecar = p.containers.find((c) => c.name === 'crl-sidecar')!;
    const reloader = p.containers.find((c) => c.name === 'reloader')!;
    const uid = (c: Container) => c.securityContext?.runAsUser ?? p.securityContext!.runAsUser;
    expect(uid(broker)).toBe(1883);
    expect(uid(reloader)).toBe(1883); // Mosquitto's uid: signalling it needs no capability
    expect(uid(sidecar)).not.toBe(1883); // same uid + shared PID namespace would expose its keys through /proc
    expect(reloader.env ?? []).toEqual([]);
    expect(reloader.envFrom ?? []).toEqual([]);
    for (const m of reloader.volumeMounts ?? []) expect(p.volumes!.find((v) => v.name === m.name)!.secret, m.name).toBeUndefined();
    // the same request/answer scripts as the compose file
    const compose = parse(readFileSync(join(ROOT, 'deploy', 'docker-compose.yml'), 'utf8')) as {
      services: Record<string, { command: string[]; environment: Record<string, string> }>;
    };
    const uncompose = (text: string) => text.replace(/\$\$/g, '$');
    expect(reloader.args!.join('\n').trim()).toBe(uncompose(compose.services['broker-reloader'].command.join('\n')).trim());
    const env = environment(sidecar);
    expect(env.get('BROKER_RELOAD_COMMAND')!.value).toBe(uncompose(compose.services.worker.environment.BROKER_RELOAD_COMMAND));
    expect(env.get('BROKER_RELOAD_COMMAND')!.value).not.toContain('$$'); // Kubernetes would reduce $$ to $
    const mountOf = (c: Container, file: string) =>
      (c.volumeMounts ?? []).filter((v) => file.startsWith(`${v.mountPath}/`)).sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
    // the pid file Mosquitto writes is the one the reloader reads; the CRL the sidecar writes is the one Mosquitto reads
    expect(mountOf(reloader, '/mosquitto/run/mosquitto.pid')).toMatchObject({ name: mountOf(broker, '/mosquitto/run/mosquitto.pid').name, readOnly: true });
    expect(mountOf(broker, env.get('CRL_OUTPUT_PATH')!.value!)).toMatchObject({ name: mountOf(sidecar, env.get('CRL_OUTPUT_PATH')!.value!).name, readOnly: true });
    for (const file of ['/var/lib/certfleet/broker-reload/request/id', '/var/lib/certfleet/broker-reload/done/answer']) {
      expect(mountOf(reloader, file).name, file).toBe(mountOf(sidecar, file).name);
    }
    // the broker's container sees no key of a CA: not the Device CA's, not the server CA's
    for (const name of new Set((broker.volumeMounts ?? []).map((v) => v.name))) {
      const volume = p.volumes!.find((v) => v.name === name)!;
      expect(volume.secret?.secretName, name).not.toBe('certfleet-device-ca');
      expect(name).not.toBe('sidecar-keys');
    }
    const copy = p.initContainers!.find((c) => c.name === 'broker-files')!;
    expect(copy.command!.join(' ')).not.toMatch(/server-ca\.key|device-ca\.key/);
    expect(readFileSync(join(DIR, 'mosquitto.yaml'), 'utf8')).toMatch(/keep\s+(#\s+)?server-ca\.key out of the mosquitto-broker-files Secret/);
  });
});
