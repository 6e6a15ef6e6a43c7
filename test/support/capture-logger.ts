import type { LogFields, Logger } from '../../src/support/logger.ts';

/** A Logger that records each call as one entry `{ level, msg, ...fields }` (what pino would print). */
export function captureLogger(into: LogFields[] = []): Logger & { entries: LogFields[] } {
  const at = (level: string) => (fields: LogFields, msg: string) => void into.push({ level, msg, ...fields });
  return { entries: into, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}
