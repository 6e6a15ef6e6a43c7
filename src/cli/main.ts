import { parseArgs } from 'node:util';
import { loadConfig } from '../config.ts';
import { commands } from './commands.ts';

const USAGE = `certfleet <command> [options]

Commands:
  serve                 API and background worker in one process (npm start)
  api                   the HTTP API only
  worker [--once]       the background worker only
  migrate               apply database migrations
  init-ca [--key-type ec-p256|rsa-3072] [--out DIR] [--cn NAME]
                        create a Device CA (key file mode 0600)
  token --tenant T [--role customer|tenant-admin|operator|operator-admin] [--ttl 1h] [--sub NAME]
                        print a development bearer token
  broker-config --out DIR [--port 8883] [--host localhost] [--bind ADDR] [--no-kick]
                        write a Mosquitto mTLS configuration (and an initial CRL);
                        more flags in the README, section Broker

Every command reads the same environment as the service (DATABASE_URL, CERTFLEET_DATA_DIR, ...).
Add --json for machine-readable output.`;

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(USAGE);
    return name ? 0 : 1;
  }
  const command = commands[name];
  if (!command) {
    console.error(`certfleet: unknown command "${name}"\n\n${USAGE}`);
    return 2;
  }
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: command.options, allowPositionals: false, strict: true });
  } catch (e) {
    console.error(`certfleet ${name}: ${(e as Error).message}`);
    return 2;
  }
  try {
    return await command.run(parsed.values as Record<string, string | boolean | undefined>, loadConfig());
  } catch (e) {
    console.error(`certfleet ${name}: ${(e as Error).message}`);
    return 1;
  }
}
