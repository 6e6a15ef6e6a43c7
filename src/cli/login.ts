import { createInterface } from 'node:readline/promises';
import { ApiError, CUSTOMER, createApiClient } from './client/api-client.ts';
import { storeCredentials } from './client/credentials.ts';
import { str } from './client-flags.ts';
import { print } from './output.ts';
import { UsageError, type CommandSpec } from './spec.ts';

async function readToken(): Promise<string> {
  if (process.stdin.isTTY) {
    const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
    try {
      return (await rl.question('token: ')).trim();
    } finally {
      rl.close();
    }
  }
  let text = '';
  for await (const chunk of process.stdin) text += chunk;
  return text.trim();
}

export const loginCommand: CommandSpec = {
  summary: 'check a URL and token against certfleet and store them for later commands (file mode 0600)',
  flags: {
    url: { type: 'string', value: 'URL', help: 'certfleet base URL (required, or CERTFLEET_URL)' },
    token: { type: 'string', value: 'TOKEN', help: 'bearer token (default: CERTFLEET_TOKEN, else read from standard input)' },
    json: { type: 'boolean', help: 'print JSON' },
  },
  example: ['certfleet token --tenant acme | certfleet login --url http://127.0.0.1:8080', 'certfleet login --url https://certfleet.example.com --token "$TOKEN"'],
  notes: 'Stored in $XDG_CONFIG_HOME/certfleet/credentials.json (default ~/.config/certfleet); --url/--token and CERTFLEET_URL/CERTFLEET_TOKEN take precedence.',
  async run(flags) {
    const url = str(flags.url) || process.env.CERTFLEET_URL;
    if (!url) throw new UsageError('--url is required');
    const token = str(flags.token) || process.env.CERTFLEET_TOKEN || (await readToken());
    if (!token) throw new UsageError('no token given');
    const api = createApiClient({ url, token });
    let role = 'tenant';
    try {
      await api.get(`${CUSTOMER}/devices`, { limit: 1 });
    } catch (e) {
      // An operator token is refused on tenant routes (403) but is still a valid token.
      if (!(e instanceof ApiError && e.status === 403)) throw e;
      role = 'operator';
    }
    const file = await storeCredentials({ url: api.baseUrl, token });
    print(flags, `logged in to ${api.baseUrl} (${role} token); stored in ${file}`, { url: api.baseUrl, credentials_path: file, kind: role });
    return 0;
  },
};
