#!/usr/bin/env node
// Runs the compiled JavaScript in dist/ (built by `npm run build`, run by `npm install` through `prepare`).
const { main } = await import('../dist/cli/main.js');
process.exitCode = await main(process.argv.slice(2));
