#!/usr/bin/env node
/**
 * What the test suite needs from the machine, in one place, shared by `npm test` and `.ci/run`.
 *
 * - `node scripts/test-setup.mjs` (run by `npm test` (scripts/run-tests.mjs) before the static checks and vitest, and by `.ci/run`):
 *   installs the Debian packages the tests drive and the machine lacks (as root, with apt-get), or
 *   prints one line naming them and the command to run; then builds `dist/` when a source is newer
 *   and the console when `dist-web/` is missing, so no test builds anything inside its time-out;
 *   and compiles the certfleet_acl broker plugin (scripts/build-broker-plugin.mjs) when its source is newer.
 * - `startTestPostgres()` (vitest's globalSetup, `test/support/global-setup.ts`): a real Postgres
 *   for the run when `TEST_DATABASE_URL` is unset and nothing listens on 127.0.0.1:5432, a
 *   throw-away cluster (Debian's initdb/pg_ctl) in a temporary folder on a free port, stopped and
 *   deleted at the end.
 *
 * Plain JavaScript with no dependency: it runs before `npm install` has built anything.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ACL_PLUGIN_PACKAGES, buildBrokerPlugin } from './build-broker-plugin.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

const onPath = (command) => spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
const pythonHasCryptography = () =>
  ['python3', '/usr/bin/python3'].some((py) => spawnSync(py, ['-c', 'import cryptography'], { stdio: 'ignore' }).status === 0);

/** The Debian package each tool comes from, and how to tell it is there. */
export const REQUIREMENTS = [
  { pkg: 'openssl', present: () => onPath('openssl') },
  { pkg: 'mosquitto', present: () => onPath('mosquitto') || existsSync('/usr/sbin/mosquitto') },
  { pkg: 'mosquitto-clients', present: () => onPath('mosquitto_pub') },
  { pkg: 'gnutls-bin', present: () => onPath('certtool') },
  { pkg: 'postgresql-client', present: () => onPath('psql') },
  // The server only when none listens: the throw-away cluster needs initdb and pg_ctl.
  { pkg: 'postgresql', present: () => postgresBinDir() !== null || process.env.TEST_DATABASE_URL !== undefined },
  { pkg: 'python3-cryptography', present: pythonHasCryptography },
  { pkg: 'chromium', present: () => existsSync('/usr/bin/chromium') }, // the console test drives /usr/bin/chromium
  { pkg: 'softhsm2', present: () => onPath('softhsm2-util') },
  { pkg: 'opensc', present: () => onPath('pkcs11-tool') }, // the SoftHSM2 tests import keys with pkcs11-tool
  { pkg: 'prometheus', present: () => onPath('promtool') },
  { pkg: 'rabbitmq-server', present: () => onPath('rabbitmq-server') || existsSync('/usr/sbin/rabbitmq-server') },
  // The certfleet_acl broker plugin (broker-plugin/certfleet_acl.c) is compiled against these.
  { pkg: 'gcc', present: () => onPath('cc') || onPath('gcc') },
  ...ACL_PLUGIN_PACKAGES.map(({ pkg, file }) => ({ pkg, present: () => existsSync(file) })),
];

/** Installs what is missing when it can (root with apt-get); otherwise one line says what to run. */
export function ensurePackages(log = console.log) {
  const missing = REQUIREMENTS.filter((r) => !r.present()).map((r) => r.pkg);
  if (missing.length === 0) return [];
  const command = `apt-get install -y --no-install-recommends ${missing.join(' ')}`;
  if (process.getuid?.() !== 0 || !onPath('apt-get')) {
    log(`test-setup: missing ${missing.join(', ')}; the tests that need them fail or are skipped. Install them: sudo apt-get update && sudo ${command}`);
    return missing;
  }
  log(`test-setup: installing ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  const res = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { stdio: ['ignore', 'ignore', 'inherit'], env });
  const still = REQUIREMENTS.filter((r) => missing.includes(r.pkg) && !r.present()).map((r) => r.pkg);
  if (res.status !== 0 || still.length > 0) log(`test-setup: apt-get could not install ${still.join(', ') || missing.join(', ')}; run: ${command}`);
  return still;
}

function newestMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

/** dist/ (when a source is newer) and dist-web/ (when missing), built once before the tests run. */
export function ensureBuilds(log = console.log) {
  const distMain = join(ROOT, 'dist', 'cli', 'main.js');
  if (!existsSync(distMain) || statSync(distMain).mtimeMs < newestMtime(join(ROOT, 'src'))) {
    log('test-setup: building dist/ (npm run build:server)');
    execFileSync('npm', ['run', '--silent', 'build:server'], { cwd: ROOT, stdio: 'inherit' });
  }
  if (!existsSync(join(ROOT, 'dist-web', 'index.html'))) {
    log('test-setup: building the web console (npm run build:web)');
    execFileSync('npm', ['run', '--silent', 'build:web'], { cwd: ROOT, stdio: 'inherit' });
  }
}

/** The certfleet_acl broker plugin (build/broker-plugin/, git-ignored); the tests that need it fail, naming the command, when it cannot be built. */
export function ensureBrokerPlugin(log = console.log) {
  try {
    buildBrokerPlugin({ log: (line) => log(`test-setup: ${line}`) });
  } catch (error) {
    log(`test-setup: ${error.message}`);
  }
}

/** Debian's postgresql server binaries (/usr/lib/postgresql/NN/bin), the newest, or null. */
export function postgresBinDir() {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return null;
  const versions = readdirSync(base).filter((v) => existsSync(join(base, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a));
  return versions.length > 0 ? join(base, versions[0], 'bin') : null;
}

const listens = (port, host = '127.0.0.1') =>
  new Promise((resolve) => {
    const socket = connect({ port, host });
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });

const freePort = () =>
  new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });

const THROWAWAY_PREFIX = 'certfleet-test-pg-';
/** Names the process that started a throw-away cluster (pid and its start time, so a reused pid does not count). */
const OWNER_FILE = 'owner';

/** A process's start time (clock ticks since boot, /proc/PID/stat field 22), or null when it is gone. */
function processStart(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/** Runs a Postgres tool, as the `postgres` user when this process is root (initdb refuses root). */
function pgTool(bin, tool, args) {
  const asRoot = process.getuid?.() === 0;
  const argv = asRoot ? ['runuser', ['-u', 'postgres', '--', join(bin, tool), ...args]] : [join(bin, tool), args];
  const res = spawnSync(argv[0], argv[1], { encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`test-setup: ${tool} failed:\n${res.stdout}\n${res.stderr}`);
}

/** Stops a throw-away cluster now (synchronously: also from an 'exit' listener) and deletes its folder. */
function stopThrowaway(bin, dir) {
  try {
    if (existsSync(join(dir, 'data', 'postmaster.pid'))) pgTool(bin, 'pg_ctl', ['-D', join(dir, 'data'), '-m', 'immediate', '-w', 'stop']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Throw-away clusters of earlier runs whose vitest process is gone (killed before its global
 * teardown, e.g. SIGKILL, or a Ctrl-C of a version without the 'exit' listener): stopped and
 * deleted. A cluster whose owner still runs (another run at the same time) is left alone, and so
 * is one without an owner file (no way to tell it from a live run's). Returns the folders reaped.
 */
export function reapStaleTestPostgres(log = console.log, base = tmpdir()) {
  const bin = postgresBinDir();
  const reaped = [];
  let entries = [];
  try {
    entries = readdirSync(base).filter((n) => n.startsWith(THROWAWAY_PREFIX));
  } catch {
    return reaped;
  }
  for (const name of entries) {
    const dir = join(base, name);
    let owner;
    try {
      owner = readFileSync(join(dir, OWNER_FILE), 'utf8').trim().split(' ');
    } catch {
      continue;
    }
    const [pid, started] = owner;
    if (!pid || (processStart(pid) !== null && processStart(pid) === started)) continue;
    try {
      if (bin) stopThrowaway(bin, dir);
      else rmSync(dir, { recursive: true, force: true });
      reaped.push(dir);
      log(`test-setup: stopped and deleted the throw-away Postgres of an earlier run that did not (${dir})`);
    } catch (error) {
      log(`test-setup: could not reap ${dir}: ${error.message}`);
    }
  }
  return reaped;
}

/**
 * The Postgres the tests use: TEST_DATABASE_URL when set, the server on 127.0.0.1:5432 when one
 * listens (unless TEST_POSTGRES=throwaway), else a throw-away cluster started now. Returns its URL
 * and how to stop what was started. The throw-away cluster also stops when this process exits
 * without calling stop() (vitest exits on Ctrl-C/SIGTERM without its global teardown, but runs
 * 'exit' listeners); one left by a process that was killed outright is reaped by the next run.
 */
export async function startTestPostgres(log = console.log) {
  if (process.env.TEST_DATABASE_URL) return { url: process.env.TEST_DATABASE_URL, stop: async () => {} };
  if (process.env.TEST_POSTGRES !== 'throwaway' && (await listens(5432))) return { url: 'postgres://postgres@127.0.0.1:5432/postgres', stop: async () => {} };
  const bin = postgresBinDir();
  if (!bin) throw new Error('test-setup: no Postgres on 127.0.0.1:5432 and no initdb; run: apt-get install -y --no-install-recommends postgresql');
  reapStaleTestPostgres(log);
  const dir = mkdtempSync(join(tmpdir(), THROWAWAY_PREFIX));
  writeFileSync(join(dir, OWNER_FILE), `${process.pid} ${processStart(process.pid)}\n`);
  const asRoot = process.getuid?.() === 0;
  // initdb refuses to run as root: the cluster belongs to the `postgres` user the package creates.
  if (asRoot) {
    const id = (flag) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
    const [uid, gid] = [id('-u'), id('-g')];
    chownSync(dir, uid, gid);
  }
  const run = (tool, args) => pgTool(bin, tool, args);
  const data = join(dir, 'data');
  const port = await freePort();
  run('initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8']);
  // Durability off: a cluster that lives for one run needs none, and each test file creates a database.
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200`;
  let stopped = false;
  const stopNow = () => {
    if (stopped) return;
    stopped = true;
    process.off('exit', onExit);
    stopThrowaway(bin, dir);
  };
  const onExit = () => {
    try {
      stopNow();
    } catch (error) {
      console.error(error.message);
    }
  };
  // pg_ctl detaches the server from the terminal: a Ctrl-C reaches vitest (which exits without its
  // global teardown), not Postgres.
  process.on('exit', onExit);
  try {
    run('pg_ctl', ['-D', data, '-o', options, '-l', join(dir, 'server.log'), '-w', '-t', '300', 'start']);
  } catch (error) {
    stopNow();
    throw error;
  }
  log(`test-setup: started a throw-away Postgres on 127.0.0.1:${port} (${dir})`);
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    /** The cluster's data folder (its postmaster.pid names the server process). */
    dataDir: data,
    async stop() {
      stopNow();
    },
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  ensurePackages();
  ensureBrokerPlugin();
  if (!process.argv.includes('--no-build') && existsSync(join(ROOT, 'node_modules'))) ensureBuilds();
}
