/**
 * The CLI's usage errors and human output (issue 25 point 6), without a server: every invalid
 * flag value exits 2 and names what is allowed; durations read "in 23 hours"; plurals; columns
 * keep their alignment; schedules read "revokes in 2 hours"; `inspect` names EKUs and key
 * usages; rotate-expiring's summary rows add up to the selection.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import ts from 'typescript';
import { plural, relativeTime, revocationSchedule, table } from '../src/cli/output.ts';
import * as wording from '../src/domain/wording.ts';
import { summarize } from '../src/cli/rotate-expiring.ts';
import { cli } from './support/cli.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** Every file under `dirs` (relative to the repository) whose name matches `pattern`. */
function filesUnder(dirs: string[], pattern: RegExp): string[] {
  const root = new URL('..', import.meta.url).pathname;
  return dirs.flatMap((dir) => readdirSync(join(root, dir), { recursive: true, withFileTypes: true }).filter((e) => e.isFile() && pattern.test(e.name)).map((e) => join(e.parentPath, e.name)));
}

describe('usage errors exit 2 and name the allowed values', () => {
  const saved = { CERTFLEET_DATA_DIR: process.env.CERTFLEET_DATA_DIR, CERTFLEET_URL: process.env.CERTFLEET_URL, CERTFLEET_TOKEN: process.env.CERTFLEET_TOKEN };
  beforeAll(() => {
    process.env.CERTFLEET_DATA_DIR = mkdtempSync(join(tmpdir(), 'certfleet-usage-'));
    // A client command that got past its flag checks would fail to connect (exit 3), not exit 2.
    process.env.CERTFLEET_URL = 'http://127.0.0.1:1';
    process.env.CERTFLEET_TOKEN = 't';
  });
  afterAll(() => {
    for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  });

  it.each([
    [['certs', 'list', '--expiring-within', '3x'], /--expiring-within must be a duration: a number with s, m, h, d or w \(e\.g\. 45m, 12h, 30d, 2w\) \(got "3x"\)/],
    [['certs', 'list', '--status', 'BOGUS'], /--status must be one of ACTIVE, REVOKED, EXPIRED \(got "BOGUS"\)/],
    [['certs', 'show', 'abc'], /CERTIFICATE_ID must be a positive whole number \(got "abc"\)/],
    [['certs', 'revoke', '-1'], /Unknown option '-1'|CERTIFICATE_ID must be/],
    [['certs', 'generate', 'D', '--key-type', 'ed25519'], /--key-type must be one of rsa-2048, ec-p256 \(got "ed25519"\)/],
    [['certs', 'rotate', 'D', '--grace-hours', '0'], /--grace-hours must be a whole number from 1 to 720 \(got "0"\)/],
    [['certs', 'generate', 'D', '--validity-days', '1.5'], /--validity-days must be a whole number from 1 to 3650/],
    [['devices', 'list', '--limit', '0'], /--limit must be a whole number from 1 to 1000/],
    [['alerts', 'list', '--type', 'NOPE'], /--type must be one of CERT_EXPIRING, CERT_EXPIRED, CRL_STALE/],
    [['alerts', 'list', '--status', 'gone'], /--status must be one of OPEN, ACKNOWLEDGED, CLOSED/],
    [['alerts', 'list', '--min-severity', '9'], /--min-severity must be a whole number from 1 to 5/],
    [['alerts', 'ack', 'x1'], /ALERT_ID must be a positive whole number/],
    [['rotate-expiring', '--within', '3x'], /--within must be a duration/],
    [['rotate-expiring'], /--within is required/],
    [['rotate-expiring', '--within', '30d', '--concurrency', '65'], /--concurrency must be a whole number from 1 to 64/],
    [['init-ca', '--key-type', 'rsa-2048'], /--key-type must be one of ec-p256, rsa-3072 \(got "rsa-2048"\)/],
    [['token', '--role', 'root'], /--role must be one of customer, tenant-admin, operator, operator-admin/],
    [['token', '--ttl', 'forever'], /--ttl must be a duration/],
    [['token'], /--tenant is required for the customer role/],
    [['token', '--tenant', 'a b'], /--tenant must be a tenant id/],
    [['worker', '--metrics-port', '70000'], /--metrics-port must be a whole number from 0 to 65535/],
    [['broker-config', '--out', '/nonexistent', '--port', '99999'], /--port must be a whole number from 1 to 65535/],
    [['broker-config'], /--out DIR is required/],
    [['broker-config', '--out', '/nonexistent', '--acl-plugin', '/x.so', '--no-acl-plugin'], /--acl-plugin and --no-acl-plugin exclude each other/],
    [['broker-config', '--out', '/nonexistent', '--acl-plugin', '/x.so', '--permissive-acl'], /--permissive-acl exists only in acl_file mode/],
    [['ca', 'create', '--key-type', 'ec-p384'], /--key-type must be one of ec-p256, rsa-3072 \(got "ec-p384"\)/],
    [['ca', 'revoke', 'ca_00', '--reason', 'keyCompromise'], /--reason must be one of cACompromise \(got "keyCompromise"\)/],
    [['ca', 'retire', 'ca_00', '--force'], /--force needs --reason TEXT/],
    [['ca', 'show', 'abc'], /ID must be a CA id such as ca_0123456789abcdef \(got "abc"\)/],
    [['rotate-expiring', '--within', '30d', '--issuer', 'old-ca'], /--issuer must be a CA id such as ca_0123456789abcdef \(got "old-ca"\)/],
    [['webhooks', 'rekey', '--batch', '0'], /--batch must be a whole number from 1 to 10000 \(got "0"\)/],
    [['webhooks', 'rekey', '--batch', 'many'], /--batch must be a whole number from 1 to 10000 \(got "many"\)/],
    [['broker-config', '--out', '/nonexistent', '--broker', 'bogus'], /--broker must be one of mosquitto, rabbitmq \(got "bogus"\)/],
    [['broker-config', '--out', '/nonexistent', '--permissive-acl', '--mqtt-renewal'], /--permissive-acl and --mqtt-renewal exclude each other/],
    [['broker-agent', '--broker', 'emqx'], /--broker must be one of mosquitto, rabbitmq \(got "emqx"\)/],
    [['broker-agent', '--wait', '0'], /--wait must be a whole number from 1 to 120 \(got "0"\)/],
    [['broker-agent', '--large-crl-bytes', '1.5'], /--large-crl-bytes must be a whole number, 0 or more \(got "1.5"\)/],
    // What the API refuses with 422 is refused here, before any request (nothing listens: that would be exit 3).
    [['certs', 'revoke', '42', '--reason', 'certificateHold'], /--reason must be one of unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn, or free text: certificateHold is not supported.* \(got "certificateHold"\)/],
    [['certs', 'revoke', '42', '--reason', 'CA compromise'], /--reason must be one of unspecified, .*, or free text: cACompromise is for CA certificates.* \(got "CA compromise"\)/],
    [['certs', 'revoke', '42', '--reason', 'x'.repeat(201)], /--reason must be one of unspecified, .*, or free text of at most 200 characters \(got "x{201}"\)/],
  ])('%j', async (args, message) => {
    const r = await cli(args);
    expect(r.stderr).toMatch(message);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain('Usage: certfleet');
  });

  it('a malformed CA id is a usage error (exit 2) before credentials are looked for (without them it was exit 3, "no token")', async () => {
    const token = process.env.CERTFLEET_TOKEN;
    delete process.env.CERTFLEET_TOKEN;
    try {
      for (const sub of ['show', 'activate', 'retire', 'revoke']) {
        const r = await cli(['ca', sub, 'old-ca', ...(sub === 'revoke' ? ['--reason', 'cACompromise'] : [])]);
        expect(r.stderr, sub).toMatch(/ID must be a CA id such as ca_0123456789abcdef \(got "old-ca"\)/);
        expect(r.code, r.stderr).toBe(2);
      }
    } finally {
      process.env.CERTFLEET_TOKEN = token;
    }
  });

  it('a value is matched case-insensitively and passed on in its canonical spelling; help lists the choices', async () => {
    const r = await cli(['certs', 'list', '--status', 'active']);
    expect(r.code).toBe(3); // past the flag checks: nothing listens on port 1
    expect((await cli(['init-ca', '--help'])).stdout).toMatch(/--key-type TYPE\s+ec-p256 \(default\) or rsa-3072/);
  });

  it('broker-config refuses its flag combinations before it writes anything (no development CA, no CRL)', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'certfleet-usage-broker-'));
    const saved = process.env.CERTFLEET_DATA_DIR;
    process.env.CERTFLEET_DATA_DIR = dataDir;
    try {
      for (const flags of [['--broker', 'bogus'], ['--permissive-acl', '--mqtt-renewal']]) {
        const r = await cli(['broker-config', '--out', join(dataDir, 'broker'), ...flags]);
        expect(r.code, r.stderr).toBe(2);
      }
      expect(readdirSync(dataDir)).toEqual([]);
    } finally {
      process.env.CERTFLEET_DATA_DIR = saved;
    }
  });

  it('certs revoke: help lists the reasons the API allows (its OpenAPI RevocationReason); a free-text reason gets past the checks', async () => {
    const openapi = JSON.parse(readFileSync(new URL('../web/src/api/openapi.json', import.meta.url), 'utf8')) as { components: { schemas: { RevocationReason: { enum: string[] } } } };
    const allowed = openapi.components.schemas.RevocationReason.enum;
    const help = (await cli(['certs', 'revoke', '--help'])).stdout.replace(/\s+/g, ' ');
    expect(help).toContain(allowed.join(', '));
    for (const refused of ['certificateHold', 'removeFromCRL', 'cACompromise', 'aACompromise']) expect(help).not.toMatch(new RegExp(`one of [^;]*\\b${refused}\\b`));
    expect((await cli(['certs', 'revoke', '42', '--reason', 'keycompromise'])).code).toBe(3); // past the flag checks: nothing listens on port 1
    expect((await cli(['certs', 'revoke', '42', '--reason', 'lost in the field'])).code).toBe(3);
  });

  it('an operator token needs no tenant', async () => {
    const r = await cli(['token', '--role', 'operator', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ role: 'operator', tenant_id: null });
  });
});

describe('human output', () => {
  const now = new Date('2026-01-01T00:00:00Z');
  const at = (ms: number) => new Date(now.getTime() + ms);

  it('durations in the largest unit that reads well, never "0 days"', () => {
    expect(relativeTime(at(23 * HOUR), now)).toBe('in 23 hours');
    expect(relativeTime(at(HOUR), now)).toBe('in 1 hour');
    expect(relativeTime(at(47 * HOUR), now)).toBe('in 47 hours');
    expect(relativeTime(at(72 * HOUR), now)).toBe('in 3 days');
    expect(relativeTime(at(-90_000), now)).toBe('2 minutes ago');
  });

  it('plurals', () => {
    expect(plural(1, 'certificate')).toBe('1 certificate');
    expect(plural(0, 'device')).toBe('0 devices');
    expect(plural(2, 'alert')).toBe('2 alerts');
    expect(plural(1, 'unexpired, unrevoked certificate')).toBe('1 unexpired, unrevoked certificate');
    expect(plural(3, 'entry', 'entries')).toBe('3 entries');
  });

  it('one wording for the CLI, the API and the console (src/domain/wording.ts): minutes, hours under 48, days under 2 years, then whole years', () => {
    expect(wording.relativeTime(at(30_000), now)).toBe('just now');
    expect(wording.relativeTime(at(45 * 60_000), now)).toBe('in 45 minutes');
    expect(wording.relativeTime(at(23 * HOUR), now)).toBe('in 23 hours');
    expect(wording.relativeTime(at(400 * DAY), now)).toBe('in 400 days');
    expect(wording.relativeTime(at((9 * 365 + 300) * DAY), now)).toBe('in 9 years');
    expect(wording.relativeTime(at(-3 * DAY), now)).toBe('3 days ago');
    // as the console calls it: an ISO string and Date.now()
    expect(wording.relativeTime(at(23 * HOUR).toISOString(), now.getTime())).toBe('in 23 hours');
    // the CLI's relativeTime and plural are these
    expect(relativeTime(at(400 * DAY), now)).toBe('in 400 days');
    expect(relativeTime(null, now)).toBe('-');
    expect(plural).toBe(wording.plural);
    // and so are the console's (web/src/format.ts: plural, and timeLeft for "Expires" and "Next expiry")
    const format = readFileSync(new URL('../web/src/format.ts', import.meta.url), 'utf8');
    expect(format).toMatch(/export \{ plural \} from '\.\.\/\.\.\/src\/domain\/wording\.ts'/);
    expect(format).toMatch(/export const timeLeft = \(iso: string, now = Date\.now\(\)\) => relativeTime\(iso, now\);/);
  });

  it('no "(s)" plural in any message of src/ or the console (web/src): counts are worded with plural()', () => {
    const found: string[] = [];
    const check = (file: string, text: string, line: number) => {
      if (/[A-Za-z]\((s|es)\)/.test(text.replace(/https?\(s\)/g, ''))) found.push(`${file}:${line}: ${text.trim().slice(0, 120)}`);
    };
    for (const file of filesUnder(['src', 'web/src'], /\.(ts|tsx|sql)$/)) {
      const text = readFileSync(file, 'utf8');
      if (file.endsWith('.sql')) {
        text.split('\n').forEach((l, i) => check(file, l.replace(/--.*$/, ''), i + 1));
        continue;
      }
      // the text a user can see: string literals, template text, JSX text (not comments, not code)
      const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, file.endsWith('.tsx') ? ts.ScriptKind.TSX : ts.ScriptKind.TS);
      const visit = (node: ts.Node) => {
        if (ts.isStringLiteralLike(node) || ts.isTemplateLiteralToken(node) || ts.isJsxText(node)) check(file, node.text, source.getLineAndCharacterOfPosition(node.getStart()).line + 1);
        ts.forEachChild(node, visit);
      };
      visit(source);
    }
    expect(found).toEqual([]);
  });

  it('a column with no value stays left-aligned like when it has one; a number column is right-aligned', () => {
    const empty = table(['id', 'rotation', 'x'], [[1, null, 'a'], [22, null, 'b']]).split('\n');
    const full = table(['id', 'rotation', 'x'], [[1, 'revokes in 2 hours', 'a'], [22, null, 'b']]).split('\n');
    expect(empty).toEqual(['ID  ROTATION  X', ' 1  -         a', '22  -         b']);
    expect(full[2]).toBe('22  -                   b');
  });

  it('a schedule reads as a schedule', () => {
    expect(revocationSchedule(at(2 * HOUR), now)).toBe('revokes in 2 hours');
    expect(revocationSchedule(at(-5 * 60_000), now)).toBe('revocation due 5 minutes ago');
    expect(revocationSchedule(null, now)).toBeNull();
  });

  it('inspect names the extended key usages and key usages', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'certfleet-inspect-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'k'), '-out', join(dir, 'c.pem'), '-days', '2', '-subj', '/CN=x',
      '-addext', 'keyUsage=critical,digitalSignature,keyAgreement', '-addext', 'extendedKeyUsage=clientAuth,1.2.3.4'], { stdio: 'pipe' });
    const r = await cli(['inspect', join(dir, 'c.pem')]);
    expect(r.stdout).toMatch(/extended key usage:\s+clientAuth, 1\.2\.3\.4$/m);
    expect(r.stdout).toMatch(/key usage:\s+digitalSignature, keyAgreement \(critical\)/);
    expect(r.stdout).not.toContain('1.3.6.1.5.5.7.3.2');
    const json = JSON.parse((await cli(['inspect', join(dir, 'c.pem'), '--json'])).stdout);
    expect(json).toMatchObject({ key_usage: ['digitalSignature', 'keyAgreement'], extended_key_usage: ['clientAuth', '1.2.3.4'] });
  });

  it('rotate-expiring: the summary rows add up to the selection, interrupted or dry', () => {
    const results = [
      ...Array.from({ length: 151 }, () => ({ outcome: 'rotated' as const })),
      ...Array.from({ length: 3 }, () => ({ outcome: 'pending' as const })),
      { outcome: 'unknown' as const },
    ];
    const run = summarize({ results, todo: new Array(199), notAttempted: 47 }, false);
    expect(run.selected).toBe(202);
    expect(run.text).toMatch(/rotated, key and certificate written\s+151\n/);
    expect(run.text).toMatch(/not attempted \(interrupted\)\s+47\n/);
    expect(run.text).toMatch(/failed: no answer, run again to resolve\s+1\n/);
    expect(run.text).toMatch(/selected \(expiring within the window\)\s+202$/);
    const dry = summarize({ results: Array.from({ length: 202 }, () => ({ outcome: 'pending' as const })), todo: [], notAttempted: 0 }, true);
    expect(dry.counts).toMatchObject({ pending: 202, 'would rotate': 0, rotated: 0 });
    expect(dry.text).toMatch(/skipped: rotation already pending\s+202\n/);
  });
});
