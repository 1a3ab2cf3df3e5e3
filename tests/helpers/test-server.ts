import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { Config } from '../../src/config';
import { parseConfig } from '../../src/config';
import type { ServerHandle, ServerOptions } from '../../src/server';
import { createServer } from '../../src/server';

/** A server started for one test, with its own SQLite file in a temporary directory. */
export interface TestServer extends ServerHandle {
  config: Config;
  dir: string;
  dbPath: string;
}

const cleanups: Array<() => Promise<void>> = [];

/**
 * Starts a server on 127.0.0.1 with a random port and a fresh SQLite file. Every server started
 * here is closed by {@link disposeTestServers}, which each suite calls in `afterEach`.
 */
export async function startTestServer(
  settings: Partial<Record<keyof Config, unknown>> = {},
  options: ServerOptions & { dir?: string } = {},
): Promise<TestServer> {
  const dir = options.dir ?? (await makeTempDir());
  const dbPath = join(dir, 'taskwire.db');
  const config = parseConfig({
    HOST: '127.0.0.1',
    PORT: 0,
    DATABASE_URL: `file:${dbPath}`,
    LLM_PROVIDER: 'demo',
    LOG_LEVEL: 'silent',
    SHUTDOWN_GRACE_MS: 200,
    TASK_RETRY_BASE_MS: 10,
    ...settings,
  });
  const logger = options.logger ?? pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const server = await createServer(config, { ...options, logger });
  cleanups.push(() => server.close());
  return { ...server, config, dir, dbPath };
}

/** Creates a temporary directory removed by {@link disposeTestServers}. */
export async function makeTempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'taskwire-test-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Registers extra clean-up (clients, mocks, child processes) to run with the servers'. */
export function onDispose(cleanup: () => Promise<void> | void): void {
  cleanups.push(async () => cleanup());
}

/** Closes every server, client and directory registered since the last call, newest first. */
export async function disposeTestServers(): Promise<void> {
  const pending = cleanups.splice(0).reverse();
  for (const cleanup of pending) {
    try {
      await cleanup();
    } catch {
      // One failed clean-up must not keep the others from running.
    }
  }
}
