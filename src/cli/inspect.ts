import { readFile } from 'node:fs/promises';
import { positiveInt } from './client-flags.ts';
import { print } from './output.ts';
import type { CommandSpec } from './spec.ts';

// The decoder (and @peculiar/x509 behind it) loads only when a file is inspected, so that
// `certfleet --help` and every other command start without it.
export const inspectCommand: CommandSpec = {
  summary: 'show what a certificate, CSR or CRL file holds (PEM or DER)',
  args: ['FILE'],
  flags: {
    json: { type: 'boolean', help: 'print JSON' },
    full: { type: 'boolean', help: 'every field, as text (like openssl -text)' },
    entries: { type: 'string', value: 'N', help: 'CRL entries to list (default 10)' },
  },
  example: ['certfleet inspect device-001.crt', 'certfleet inspect device-crl.pem --entries 50'],
  async run(flags, [file]) {
    const { inspect } = await import('./inspect-decode.ts');
    const result = await inspect(await readFile(file), positiveInt(flags.entries, 'entries', 10));
    print(flags, flags.full ? result.full : result.human, result.data);
    return 0;
  },
};
