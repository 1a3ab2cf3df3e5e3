import pino from 'pino';
import type { Logger } from 'pino';

export type { Logger };

/** Options for {@link createLogger}. */
export interface LoggerOptions {
  /** @default 'info' */
  level?: string;
  /** Human-readable output instead of JSON. @default true when stdout is a terminal */
  pretty?: boolean;
}

/** Paths whose values are replaced by `[Redacted]` in every log line. */
const REDACTED_PATHS = [
  'apiKey',
  '*.apiKey',
  'LLM_API_KEY',
  '*.LLM_API_KEY',
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
];

/** Creates the root logger; areas take child loggers with `logger.child({ area: 'queue' })`. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const pretty = options.pretty ?? process.stdout.isTTY === true;
  return pino({
    level: options.level ?? 'info',
    redact: { paths: REDACTED_PATHS, censor: '[Redacted]' },
    transport: pretty
      ? { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l' } }
      : undefined,
  });
}
