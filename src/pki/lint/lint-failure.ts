import { AppError, type ErrorCode } from '../../domain/errors.ts';

/** One broken profile rule: `rule` is a stable name (e.g. `cert.key_usage`), `message` says what was found. */
export class LintFailure extends Error {
  constructor(
    readonly rule: string,
    message: string,
  ) {
    super(`lint rule ${rule} failed: ${message}`);
    this.name = 'LintFailure';
  }
}

export function lintCheck(condition: unknown, rule: string, message: string | (() => string)): asserts condition {
  if (!condition) throw new LintFailure(rule, typeof message === 'string' ? message : message());
}

/**
 * Runs a lint and turns its failure into the catalogue's error: LINT_FAILED (500: our own
 * output is wrong, nothing is stored) or, for input a caller sent, the given 4xx code.
 */
export function runLint<T>(lint: () => T, code: ErrorCode = 'LINT_FAILED'): T {
  try {
    return lint();
  } catch (e) {
    throw lintError(e, code);
  }
}

/** runLint for a lint that awaits (the throwaway key's signature). */
export async function runLintAsync<T>(lint: () => Promise<T>, code: ErrorCode = 'LINT_FAILED'): Promise<T> {
  try {
    return await lint();
  } catch (e) {
    throw lintError(e, code);
  }
}

function lintError(e: unknown, code: ErrorCode): AppError {
  if (e instanceof LintFailure) return new AppError(code, e.message, { rule: e.rule });
  if (e instanceof AppError) return e;
  return new AppError(code, `lint rule parse failed: ${(e as Error).message}`, { rule: 'parse' });
}
