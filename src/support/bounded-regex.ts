import vm from 'node:vm';

/** A tenant's regular expression may run this long on one value (a catastrophic pattern cannot stall the process). */
export const REGEX_TIME_LIMIT_MS = 50;

const context = vm.createContext({ pattern: '', value: '' });
const script = new vm.Script('(() => { const m = new RegExp(pattern).exec(value); return m && typeof m[1] === "string" ? m[1] : null; })()');

/**
 * The first capture group of `pattern` on `value`, or null when it does not match; throws
 * RegexTimeoutError when the match runs longer than the limit (vm's timeout interrupts it).
 */
export function boundedCapture(pattern: string, value: string, timeoutMs = REGEX_TIME_LIMIT_MS): string | null {
  context.pattern = pattern;
  context.value = value;
  try {
    const result: unknown = script.runInContext(context, { timeout: timeoutMs });
    return typeof result === 'string' ? result : null;
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') throw new RegexTimeoutError(`the pattern ran longer than ${timeoutMs} ms`);
    throw e;
  }
}

export class RegexTimeoutError extends Error {}
