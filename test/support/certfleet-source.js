#!/usr/bin/env node
// The CLI run from the TypeScript sources (through tsx): what the tests spawn, so they never test a
// stale dist/. test/dist-cli.test.ts runs the real bin (bin/certfleet.js, compiled JavaScript).
import { register } from 'tsx/esm/api';
register();
const { main } = await import('../../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
