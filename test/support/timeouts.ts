/**
 * A test's own time-out, stretched like the configured ones (vitest.config.ts sets the factor from
 * the machine's load per core when the run starts): waits end on signals, time-outs only bound them.
 */
export function scaled(ms: number): number {
  const factor = Number(process.env.CERTFLEET_TEST_TIMEOUT_SCALE ?? '1');
  return Math.round(ms * (Number.isFinite(factor) && factor >= 1 ? factor : 1));
}
