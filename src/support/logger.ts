/**
 * The one logger interface: the pino subset the code calls, `(fields, msg)`. Every process logs
 * through one pino instance (createLogger), so every stdout line is a JSON object with the same
 * keys: level (label), time, pid, hostname, msg and the fields.
 */
import { pino, type DestinationStream } from 'pino';

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(fields: LogFields, msg: string): void;
  info(fields: LogFields, msg: string): void;
  warn(fields: LogFields, msg: string): void;
  error(fields: LogFields, msg: string): void;
}

const ignore = () => undefined;
export const silentLogger: Logger = { debug: ignore, info: ignore, warn: ignore, error: ignore };

/** The process logger: pino, also Fastify's request logger. */
export type ProcessLogger = pino.Logger;

/** Credentials that may appear in request logs; never written. */
const REDACT = ['req.headers.authorization', 'req.headers.cookie', 'password', 'token', 'secret'];

/** The process logger (also Fastify's), honouring LOG_LEVEL. */
export function createLogger(options: { level?: string; destination?: DestinationStream } = {}): ProcessLogger {
  return pino(
    {
      level: options.level ?? 'info',
      redact: REDACT,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
