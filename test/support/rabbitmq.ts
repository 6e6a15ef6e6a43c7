/**
 * Test harness: our own RabbitMQ node (Debian's rabbitmq-server 3.10) on free ports, with its
 * own node name, data, logs and Erlang cookie under `dir`: never the node already running on
 * the machine (5672). Ready when the node logs "Server startup complete" (after its listeners).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderRabbitmqConfig, type RabbitmqConfigOptions } from '../../src/broker/rabbitmq-config.ts';
import { freePort } from './mosquitto.ts';

export const RABBITMQ_BIN = process.env.RABBITMQ_BIN_DIR ?? '/usr/lib/rabbitmq/bin';

export interface RunningRabbitmq {
  mqttTlsPort: number;
  managementUrl: string;
  logs(): string;
  stop(): Promise<void>;
}

/**
 * `config`: the files `broker-config --broker rabbitmq` wrote (OUT/rabbitmq, with the ports it
 * was given), or options to render them into `dir` here. `dir` holds the node's data and logs.
 */
export async function startRabbitmq(
  dir: string,
  config: { configDir: string; mqttTlsPort: number; managementPort: number } | Omit<RabbitmqConfigOptions, 'mqttTlsPort' | 'managementPort'>,
): Promise<RunningRabbitmq> {
  const ports = new Set<number>();
  while (ports.size < 4) ports.add(await freePort());
  let [mqttTlsPort, managementPort, nodePort, distPort] = [...ports] as [number, number, number, number];
  for (const sub of ['mnesia', 'log', 'home']) mkdirSync(join(dir, sub), { recursive: true });
  let configDir = dir;
  if ('configDir' in config) {
    ({ configDir, mqttTlsPort, managementPort } = config);
  } else {
    const rendered = renderRabbitmqConfig({ ...config, mqttTlsPort, managementPort });
    writeFileSync(join(dir, 'rabbitmq.conf'), rendered.conf);
    writeFileSync(join(dir, 'advanced.config'), rendered.advanced);
    writeFileSync(join(dir, 'enabled_plugins'), rendered.enabledPlugins);
  }
  const node = `certfleet-test-${process.pid}-${nodePort}@localhost`;
  const env = {
    ...process.env,
    HOME: join(dir, 'home'),
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_PORT: String(nodePort),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_CONFIG_FILE: join(configDir, 'rabbitmq'),
    RABBITMQ_ADVANCED_CONFIG_FILE: join(configDir, 'advanced.config'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(configDir, 'enabled_plugins'),
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    RABBITMQ_PID_FILE: join(dir, 'rabbitmq.pid'),
    RABBITMQ_LOGS: '-',
  };
  chmodSync(join(dir, 'home'), 0o700);
  let output = '';
  const child: ChildProcess = spawn(join(RABBITMQ_BIN, 'rabbitmq-server'), [], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // A run that ends without stop() (a failed hook, Ctrl-C) must not leave the node's process group behind.
  const killGroup = () => {
    if (child.exitCode === null && child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
  };
  process.once('exit', killGroup);
  void exited.then(() => process.off('exit', killGroup));
  // SIGTERM makes the Erlang VM (OTP 20 and later) shut the node down cleanly, as `rabbitmqctl stop`
  // did; that started a second Erlang VM (about 1.5 s of CPU) and blocked this process (spawnSync) while it ran.
  const stop = async () => {
    if (child.exitCode !== null) return;
    process.kill(-child.pid!, 'SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
    if (child.exitCode === null) process.kill(-child.pid!, 'SIGKILL');
    await exited;
  };
  // a wait for the node's readiness signal, not a delay
  const until = Date.now() + 180_000;
  while (!/Server startup complete/.test(output)) {
    if (child.exitCode !== null || Date.now() > until) {
      await stop();
      throw new Error(`RabbitMQ did not start (exit ${child.exitCode}):\n${output.slice(-5000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { mqttTlsPort, managementUrl: `http://127.0.0.1:${managementPort}`, logs: () => output, stop };
}
