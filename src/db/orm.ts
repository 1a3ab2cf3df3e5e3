import { mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Migrator } from '@mikro-orm/migrations';
import { MikroORM } from '@mikro-orm/sqlite';
import type { Options } from '@mikro-orm/sqlite';
import { ConfigError } from '../config';
import type { Logger } from '../logger';
import { ApiKey } from './entities/api-key.entity';
import { CacheEntry } from './entities/cache-entry.entity';
import { Task } from './entities/task.entity';
import { migrations } from './migrations';
import { OrmLogger } from './orm-logger';

/** Options for {@link createOrm}. */
export interface CreateOrmOptions {
  /**
   * `file:PATH` (relative to the working directory), `file::memory:` or a bare path. The parent
   * directory of a file is created when missing.
   */
  databaseUrl: string;
  /** Milliseconds a connection waits for a lock held by another connection before SQLITE_BUSY. */
  busyTimeoutMs: number;
  /** Root logger; the database logs through its `{ area: 'db' }` child. */
  logger: Logger;
  /** Logs every SQL statement at debug level. @default false */
  debug?: boolean;
  /**
   * Bytes SQLite leaves in the `-wal` file after a checkpoint resets it (`PRAGMA
   * journal_size_limit`); without it one large transaction keeps the file at its peak size.
   * @default 67108864 (64 MiB)
   */
  journalSizeLimitBytes?: number;
}

/** Per-connection SQLite settings as read back from the database. */
export interface SqlitePragmas {
  /** `wal` for a file database, `memory` for an in-memory one. */
  journalMode: string;
  /** 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA. */
  synchronous: number;
  /** Milliseconds. */
  busyTimeout: number;
}

/** Where a `DATABASE_URL` points. */
export interface SqliteTarget {
  /** Absolute path of the database file, or `:memory:`. */
  filename: string;
}

const MEMORY = ':memory:';
const DEFAULT_JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024;

/**
 * Opens the database, sets the pragmas on every connection, checks them and runs pending
 * migrations. The schema only ever changes through migrations; nothing is synchronised from the
 * entities at run time.
 * @throws ConfigError for a URL this build cannot open; Error when WAL mode cannot be enabled.
 */
export async function createOrm(options: CreateOrmOptions): Promise<MikroORM> {
  const { busyTimeoutMs } = options;
  if (!Number.isInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
    throw new RangeError(`Expected busyTimeoutMs to be an integer >= 0, got ${busyTimeoutMs}.`);
  }
  const journalSizeLimit = options.journalSizeLimitBytes ?? DEFAULT_JOURNAL_SIZE_LIMIT_BYTES;
  if (!Number.isSafeInteger(journalSizeLimit) || journalSizeLimit < 0) {
    throw new RangeError(
      `Expected journalSizeLimitBytes to be an integer >= 0, got ${journalSizeLimit}.`,
    );
  }
  const { filename } = parseDatabaseUrl(options.databaseUrl);
  if (filename !== MEMORY) await mkdir(dirname(filename), { recursive: true });
  const log = options.logger.child({ area: 'db' });
  const orm = await MikroORM.init(createOrmConfig(filename, options, log));
  try {
    if (options.debug === true) logStatements(orm, log);
    await checkPragmas(orm, filename, log);
    await runMigrations(orm, log);
  } catch (error) {
    await orm.close(true);
    throw error;
  }
  return orm;
}

/**
 * Resolves a `DATABASE_URL` to a SQLite file name.
 * @throws ConfigError for any other kind of URL; the message never repeats credentials.
 */
export function parseDatabaseUrl(url: string): SqliteTarget {
  const value = url.trim();
  if (value === 'file::memory:' || value === MEMORY) return { filename: MEMORY };
  if (/^postgres(ql)?:/i.test(value)) {
    // TODO(db): plug in @mikro-orm/postgresql here (driver, pool, no SQLite pragmas) once the
    // scale-out build adds it; TaskStore's queries are plain knex apart from the purge's INDEXED BY.
    throw new ConfigError(
      'DATABASE_URL: PostgreSQL is not supported yet in this build; use file:PATH for SQLite (got a postgres: URL).',
    );
  }
  if (value.startsWith('file:')) return { filename: parseFileUrl(value) };
  const scheme = /^([a-z][a-z0-9+.-]+):/i.exec(value)?.[1];
  if (scheme !== undefined) {
    throw new ConfigError(
      `DATABASE_URL: expected file:PATH, file::memory: or a file path, got a ${scheme}: URL.`,
    );
  }
  return { filename: resolve(value) };
}

function parseFileUrl(value: string): string {
  if (value.includes('?')) {
    throw new ConfigError(
      `DATABASE_URL: query parameters are not supported in file: URLs (got ${JSON.stringify(value)}).`,
    );
  }
  if (value.startsWith('file://')) {
    try {
      return fileURLToPath(value);
    } catch (error) {
      throw new ConfigError(
        `DATABASE_URL: ${(error as Error).message} (got ${JSON.stringify(value)}).`,
      );
    }
  }
  const path = value.slice('file:'.length);
  if (path === '')
    throw new ConfigError('DATABASE_URL: file: needs a path, as in file:./data/taskwire.db.');
  return resolve(path);
}

/** Reads the per-connection pragmas back from the database. */
export async function readPragmas(orm: MikroORM): Promise<SqlitePragmas> {
  const connection = orm.em.getConnection();
  const read = async (pragma: string): Promise<unknown> => {
    const [row] = await connection.execute<Record<string, unknown>[]>(`pragma ${pragma}`);
    return row === undefined ? undefined : Object.values(row)[0];
  };
  return {
    journalMode: String(await read('journal_mode')),
    synchronous: Number(await read('synchronous')),
    busyTimeout: Number(await read('busy_timeout')),
  };
}

function createOrmConfig(filename: string, options: CreateOrmOptions, log: Logger): Options {
  return {
    dbName: filename,
    entities: [Task, CacheEntry, ApiKey],
    extensions: [Migrator],
    migrations: {
      // Explicit imports, no glob: identical under tsc output, tsx and jest.
      migrationsList: migrations,
      snapshot: false,
      silent: true,
      transactional: true,
      allOrNothing: true,
    },
    // One connection: SQLite has one writer anyway, and `:memory:` is a separate database per
    // connection. Queries inside a transaction must therefore run on that transaction's connection.
    pool: {
      min: 1,
      max: 1,
      afterCreate: createPragmaHook(
        options.busyTimeoutMs,
        options.journalSizeLimitBytes ?? DEFAULT_JOURNAL_SIZE_LIMIT_BYTES,
      ),
    },
    // Keeps bound values (prompts, results) out of error messages and logs.
    driverOptions: { compileSqlOnError: false },
    // SQLite creates the file on first connection; there is no server-side database to create.
    ensureDatabase: false,
    // Statements are logged once, from knex (see `logStatements`), covering raw knex queries too.
    debug: options.debug === true ? ['info', 'discovery', 'schema'] : false,
    loggerFactory: (loggerOptions) => new OrmLogger(log, loggerOptions),
  };
}

/** Logs each statement knex sends, whether MikroORM or a hand-written query built it. */
function logStatements(orm: MikroORM, log: Logger): void {
  orm.em
    .getConnection()
    .getKnex()
    .on('query', (query: { sql: string }) => log.debug({ orm: 'query' }, query.sql));
}

/** The part of a node-sqlite3 connection the pool hook needs. */
interface RawSqliteConnection {
  exec(sql: string, callback: (error: Error | null) => void): void;
}

/**
 * Runs on every physical connection the pool opens. busy_timeout comes first so that switching
 * the journal mode also waits for a lock instead of failing at once.
 */
function createPragmaHook(busyTimeoutMs: number, journalSizeLimitBytes: number) {
  const sql = [
    `PRAGMA busy_timeout = ${busyTimeoutMs}`,
    'PRAGMA journal_mode = WAL',
    `PRAGMA journal_size_limit = ${journalSizeLimitBytes}`,
    'PRAGMA synchronous = NORMAL',
    'PRAGMA foreign_keys = ON',
  ].join(';\n');
  return (connection: RawSqliteConnection, done: (error: Error | null, c: unknown) => void) => {
    connection.exec(sql, (error) => done(error, connection));
  };
}

async function checkPragmas(orm: MikroORM, filename: string, log: Logger): Promise<void> {
  const pragmas = await readPragmas(orm);
  log.info({ filename, ...pragmas }, 'Opened SQLite database');
  if (filename !== MEMORY && pragmas.journalMode !== 'wal') {
    throw new Error(
      `SQLite kept journal_mode '${pragmas.journalMode}' for ${filename} instead of switching to 'wal'; ` +
        'WAL needs a local file system with shared memory support (network file systems lack it).',
    );
  }
}

async function runMigrations(orm: MikroORM, log: Logger): Promise<void> {
  const started = Date.now();
  const applied = await orm.getMigrator().up();
  if (applied.length > 0) {
    const names = applied.map((migration) => migration.name);
    log.info({ migrations: names, ms: Date.now() - started }, 'Applied database migrations');
  }
}
