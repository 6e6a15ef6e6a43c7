/**
 * `broker-config --broker rabbitmq`: next to the server certificate and CA bundle that
 * broker-config writes for every broker kind, a RabbitMQ 3.10 node's files in OUT/rabbitmq:
 * rabbitmq.conf, advanced.config, enabled_plugins, the CRL hash directory with the current CRL,
 * and the management password the broker agent uses.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { checkBundle, trustedCasFromPem } from '../broker/agent/bundle-check.ts';
import { crlHashDirTarget } from '../broker/agent/crl-targets.ts';
import { renderRabbitmqConfig } from '../broker/rabbitmq-config.ts';
import { writeFileAtomic } from '../support/atomic-file.ts';

export interface RabbitmqFiles {
  dir: string;
  conf: string;
  advanced: string;
  enabledPlugins: string;
  crlDir: string;
  adminPasswordFile: string;
  adminUsername: string;
  managementUrl: string;
}

export async function writeRabbitmqFiles(o: {
  outDir: string;
  mqttTlsPort: number;
  managementPort: number;
  serverCert: string;
  serverKey: string;
  deviceCaCert: string;
  crlOutputPath: string;
}): Promise<{ files: RabbitmqFiles; lines: string[] }> {
  const dir = join(o.outDir, 'rabbitmq');
  const crlDir = join(dir, 'crls');
  await mkdir(crlDir, { recursive: true, mode: 0o755 });
  const adminPasswordFile = join(dir, 'management.password');
  const lines: string[] = [];
  if (!existsSync(adminPasswordFile)) {
    await writeFileAtomic(adminPasswordFile, `${randomBytes(24).toString('base64url')}\n`, 0o600);
    lines.push(`wrote the management password ${adminPasswordFile} (0600)`);
  }
  const adminPassword = (await readFile(adminPasswordFile, 'utf8')).trim();
  const rendered = renderRabbitmqConfig({
    mqttTlsPort: o.mqttTlsPort,
    managementPort: o.managementPort,
    cacertfile: o.deviceCaCert,
    certfile: o.serverCert,
    keyfile: o.serverKey,
    crlDir,
    adminUsername: 'certfleet-admin',
    adminPassword,
  });
  const files: RabbitmqFiles = {
    dir,
    conf: join(dir, 'rabbitmq.conf'),
    advanced: join(dir, 'advanced.config'),
    enabledPlugins: join(dir, 'enabled_plugins'),
    crlDir,
    adminPasswordFile,
    adminUsername: 'certfleet-admin',
    managementUrl: `http://127.0.0.1:${o.managementPort}`,
  };
  // rabbitmq.conf holds the management password: not world-readable
  await writeFileAtomic(files.conf, rendered.conf, 0o640);
  await writeFileAtomic(files.advanced, rendered.advanced, 0o644);
  await writeFileAtomic(files.enabledPlugins, rendered.enabledPlugins, 0o644);
  // OTP refuses every client while the hash directory has no CRL of their CA: put the current one there
  const crlPem = await readFile(o.crlOutputPath, 'latin1');
  const cas = trustedCasFromPem(await readFile(o.deviceCaCert, 'utf8'));
  await crlHashDirTarget(crlDir).write(checkBundle(crlPem, cas, new Map(), null), crlPem);
  lines.push(`wrote the RabbitMQ files in ${dir} (MQTT over TLS on ${o.mqttTlsPort}, management on 127.0.0.1:${o.managementPort}) and the CRL in ${crlDir}`);
  return { files, lines };
}
