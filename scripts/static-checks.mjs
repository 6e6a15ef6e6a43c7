#!/usr/bin/env node
/**
 * The static checks `npm test` runs before vitest: the type check of the whole project (tsc), the
 * stricter one of the folders held to `noUncheckedIndexedAccess` (tsc-index,
 * tsconfig.index-checked.json), and typescript-eslint with type information over src/ and test/
 * (lint, eslint.config.js). Each one's time is printed; the exit code is non-zero when any of them
 * fails, with its output (tsc's diagnostics as `tsc --noEmit -p …` prints them, eslint's as
 * `eslint --max-warnings 0 src test` does).
 *
 * Cost: the type check is most of every one of them, so they share it. tsc and lint run in one
 * process on one TypeScript program: eslint's type-aware rules get the program (and its checker,
 * whose types tsc's check has already computed) through `parserOptions.programs` instead of building
 * a third one with the project service. tsc-index runs beside them in a second process (the two
 * cores stay busy). Measured in CPU seconds (user + system), load 31 on 2 cores: 81 s for three
 * separate processes (tsc 21.6, tsc-index 9.3, eslint 50.4), 56 s this way.
 *
 * `node scripts/static-checks.mjs lint` runs some of them by name (tsc, tsc-index, lint), in this
 * process; with no name, all three as described.
 */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const NAMES = ['tsc', 'tsc-index', 'lint'];
/** What runs in each process when no check is named. */
const GROUPS = [['tsc', 'lint'], ['tsc-index']];

/** The TypeScript program of a tsconfig, as `tsc -p` builds it, with its parse-time diagnostics. */
async function typeProgram(configName) {
  const { default: ts } = await import('typescript');
  const configErrors = [];
  const parsed = ts.getParsedCommandLineOfConfigFile(join(ROOT, configName), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => configErrors.push(d) });
  if (!parsed) return { ts, program: null, diagnostics: configErrors };
  const program = ts.createProgram({
    rootNames: parsed.fileNames,
    options: parsed.options,
    projectReferences: parsed.projectReferences,
    configFileParsingDiagnostics: ts.getConfigFileParsingDiagnostics(parsed),
  });
  return { ts, program, diagnostics: ts.getPreEmitDiagnostics(program) };
}

function formatDiagnostics(ts, diagnostics) {
  return ts.formatDiagnostics(diagnostics, { getCanonicalFileName: (f) => f, getCurrentDirectory: () => ROOT, getNewLine: () => '\n' });
}

async function timed(name, body) {
  const started = performance.now();
  try {
    const { code, output } = await body();
    return { name, code, output, seconds: (performance.now() - started) / 1000 };
  } catch (error) {
    return { name, code: 1, output: `${error?.stack ?? error}\n`, seconds: (performance.now() - started) / 1000 };
  }
}

/** Runs the named checks in this process; tsc and lint share one program. */
async function runInProcess(names) {
  const results = [];
  let shared = null;
  const whole = async () => (shared ??= await typeProgram('tsconfig.json'));
  for (const name of names) {
    if (name === 'tsc' || name === 'tsc-index') {
      results.push(
        await timed(name, async () => {
          const { ts, diagnostics } = name === 'tsc' ? await whole() : await typeProgram('tsconfig.index-checked.json');
          return { code: diagnostics.length > 0 ? 2 : 0, output: formatDiagnostics(ts, diagnostics) };
        }),
      );
    } else {
      results.push(
        await timed(name, async () => {
          const { program } = await whole();
          const { ESLint } = await import('eslint');
          // eslint.config.js asks for the project service; here the program tsc checked serves instead.
          const overrideConfig = program
            ? [{ files: ['src/**/*.ts', 'test/**/*.ts'], languageOptions: { parserOptions: { projectService: false, programs: [program] } } }]
            : [];
          const eslint = new ESLint({ cwd: ROOT, overrideConfig });
          const lintResults = await eslint.lintFiles(['src', 'test']);
          const findings = lintResults.reduce((n, r) => n + r.errorCount + r.warningCount + r.fatalErrorCount, 0);
          const output = findings > 0 ? await (await eslint.loadFormatter('stylish')).format(lintResults) : '';
          return { code: findings > 0 ? 1 : 0, output };
        }),
      );
    }
  }
  return results;
}

/** One child process per group; each prints its results as one JSON line. */
function runGroup(names) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--json', ...names], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const failed = (output) => names.map((name) => ({ name, code: 1, output, seconds: 0 }));
    child.on('error', (error) => resolve(failed(`${stderr}${error.message}\n`)));
    child.on('close', (code, signal) => {
      try {
        resolve(JSON.parse(stdout.trim().split('\n').at(-1) ?? ''));
      } catch {
        resolve(failed(`${stdout}${stderr}exited with ${signal ?? code}\n`));
      }
    });
  });
}

const args = process.argv.slice(2);
const json = args[0] === '--json';
const wanted = json ? args.slice(1) : args;
const unknown = wanted.filter((n) => !NAMES.includes(n));
if (unknown.length > 0) {
  console.error(`static-checks: unknown check ${unknown.join(', ')} (known: ${NAMES.join(', ')})`);
  process.exit(2);
}
const results = wanted.length > 0 ? await runInProcess(wanted) : (await Promise.all(GROUPS.map(runGroup))).flat();
if (json) {
  console.log(JSON.stringify(results));
  process.exit(0);
}
let failed = false;
for (const r of results) {
  if (r.code !== 0) {
    failed = true;
    process.stderr.write(`\n${r.name} failed:\n${r.output}`);
  }
}
const order = (r) => NAMES.indexOf(r.name);
console.log(`static checks: ${[...results].sort((a, b) => order(a) - order(b)).map((r) => `${r.name} ${r.code === 0 ? 'ok' : 'FAILED'} ${r.seconds.toFixed(1)} s`).join(', ')}`);
process.exit(failed ? 1 : 0);
