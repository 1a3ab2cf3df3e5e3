import { ConfigError, loadConfig } from './config';
import { createLogger } from './logger';
import { createServer } from './server';

/** Starts the server from environment variables and stops it on SIGTERM or SIGINT. */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger({ level: config.LOG_LEVEL });
  const server = await createServer(config, { logger });
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'Second stop signal: exiting at once');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'Stopping');
    server.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.fatal({ err: error }, 'Shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((error: unknown) => {
  const logger = createLogger();
  logger.fatal({ err: error }, 'Taskwire failed to start');
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 100).unref();
});
