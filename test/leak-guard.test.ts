/**
 * A test file whose beforeAll started a Mosquitto and then failed leaves that broker to the leak
 * guard (test/support/leak-guard.ts): stopped when the file ends, and named. Driven through vitest
 * itself with the project's setup file, on a throw-away test folder.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { startVitest } from 'vitest/node';

const support = join(import.meta.dirname, 'support');

it('a broker left running by a failed beforeAll is stopped when its file ends, and named', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'certfleet-leak-'));
  const pidFile = join(dir, 'broker.pid');
  writeFileSync(
    join(dir, 'leaks.test.ts'),
    [
      "import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';",
      "import { tmpdir } from 'node:os';",
      "import { join } from 'node:path';",
      "import { beforeAll, it } from 'vitest';",
      `import { freePort, startMosquitto } from ${JSON.stringify(join(support, 'mosquitto.ts'))};`,
      'beforeAll(async () => {',
      "  const configDir = mkdtempSync(join(tmpdir(), 'certfleet-leak-broker-'));",
      '  chmodSync(configDir, 0o777); // Mosquitto writes its pid file after dropping to the mosquitto user',
      '  const port = await freePort();',
      "  const pidFile = join(configDir, 'mosquitto.pid');",
      "  writeFileSync(join(configDir, 'mosquitto.conf'), ['persistence false', `pid_file ${pidFile}`, 'log_dest stderr', 'log_type all', `listener ${port} 127.0.0.1`, 'allow_anonymous true', ''].join('\\n'));",
      "  writeFileSync(join(configDir, 'mosquitto-config.json'), JSON.stringify({ port, pidFile }));",
      '  const broker = await startMosquitto({ configDir, asWritten: true });',
      `  writeFileSync(${JSON.stringify(pidFile)}, String(broker.pid));`,
      "  throw new Error('set-up broke after the broker started');",
      '});',
      "it('never runs', () => {});",
    ].join('\n'),
  );
  const logs: string[] = [];
  const vitest = await startVitest('test', [], {
    root: dir,
    watch: false,
    config: false,
    globalSetup: [],
    setupFiles: [join(support, 'leak-guard.ts')],
    include: ['*.test.ts'],
    isolate: false,
    maxWorkers: 1,
    reporters: [{ onUserConsoleLog: (log) => void logs.push(log.content) }],
  });
  try {
    const errors = vitest.state.getTestModules().flatMap((m) => [...m.errors(), ...[...m.children.allTests()].flatMap((t) => t.result().errors ?? [])]).map((e) => e.message);
    // The file failed for the planned reason, after the broker started.
    expect(errors.join('\n')).toContain('set-up broke after the broker started');
    const pid = Number(readFileSync(pidFile, 'utf8'));
    expect(logs.join('')).toMatch(/leak-guard: .*leaks\.test\.ts left 1 Mosquitto broker running .*: stopped/);
    expect(() => process.kill(pid, 0)).toThrow(/ESRCH/);
  } finally {
    await vitest.close();
    process.exitCode = 0;
  }
});
