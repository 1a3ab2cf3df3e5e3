import type {
  LogContext,
  Logger as OrmLoggerContract,
  LoggerNamespace,
  LoggerOptions as OrmLoggerOptions,
} from '@mikro-orm/core';
import type { Logger } from '../logger';

/** Namespaces whose messages are routine detail rather than news. */
const DEBUG_NAMESPACES: ReadonlySet<string> = new Set(['query', 'query-params', 'discovery']);

/**
 * Sends MikroORM's log messages to pino instead of the console, without colour codes. Migration
 * progress (which MikroORM always reports) arrives at info, deprecations at warn, and queries,
 * discovery and connection chatter only in debug mode.
 */
export class OrmLogger implements OrmLoggerContract {
  private debugMode: boolean | LoggerNamespace[];

  constructor(
    private readonly target: Logger,
    options: Pick<OrmLoggerOptions, 'debugMode'> = {},
  ) {
    this.debugMode = options.debugMode ?? false;
  }

  log(namespace: string, message: string, context?: LogContext): void {
    if (!this.isEnabled(namespace, context)) return;
    const fields = { orm: namespace, ...(context?.label ? { label: context.label } : {}) };
    const text = message.replace(/\s+/g, ' ').trim();
    if (context?.level === 'error') this.target.error(fields, text);
    else if (context?.level === 'warning' || namespace === 'deprecated')
      this.target.warn(fields, text);
    else if (DEBUG_NAMESPACES.has(namespace)) this.target.debug(fields, text);
    else this.target.info(fields, text);
  }

  error(namespace: string, message: string, context?: LogContext): void {
    this.log(namespace, message, { ...context, level: 'error' });
  }

  warn(namespace: string, message: string, context?: LogContext): void {
    this.log(namespace, message, { ...context, level: 'warning' });
  }

  logQuery(context: LogContext): void {
    if (!this.isEnabled('query', context) || context.query === undefined) return;
    const { took, results, affected } = context;
    this.target.debug({ orm: 'query', took, results, affected }, context.query);
  }

  setDebugMode(debugMode: boolean | LoggerNamespace[]): void {
    this.debugMode = debugMode;
  }

  isEnabled(namespace: string, context?: LogContext): boolean {
    if (context?.enabled !== undefined) return context.enabled;
    if (namespace === 'deprecated') return true;
    const mode = context?.debugMode ?? this.debugMode;
    return Array.isArray(mode) ? mode.some((name) => name === namespace) : mode;
  }
}
