import type { Knex } from '@mikro-orm/sqlite';
import type { Logger } from '../logger';
import { sqliteMessage } from './sqlite-errors';

/** The part of a node-sqlite3 connection that runs a script. */
interface ScriptConnection {
  exec(sql: string, callback: (error: Error | null) => void): void;
}

/**
 * Runs `statements` as one transaction, `BEGIN IMMEDIATE` to `COMMIT`, in a single call into the
 * driver, on a pool connection of its own. One call instead of one per statement matters: each
 * call is a round trip through the driver's thread pool and back through a busy event loop.
 *
 * Any failure, COMMIT included, is followed by a ROLLBACK on the same connection before it goes
 * back to the pool, so no connection is ever left inside a transaction. `BEGIN IMMEDIATE` takes
 * the write lock up front, so a busy database makes BEGIN wait (busy_timeout) rather than a later
 * statement fail half way. The statements must carry their values as literals (see `sql-text`).
 */
export async function runWriteScript(
  knex: Knex,
  statements: readonly string[],
  log: Logger,
): Promise<void> {
  if (statements.length === 0) return;
  // Typed `any` by knex; for SQLite it is the node-sqlite3 Database.
  const connection = (await knex.client.acquireConnection()) as ScriptConnection;
  const script = `BEGIN IMMEDIATE;\n${statements.join(';\n')};\nCOMMIT;`;
  try {
    try {
      await exec(connection, script);
    } catch (error) {
      if (!/within a transaction/.test(sqliteMessage(error))) throw error;
      // Someone left this connection inside a transaction; no one else can be using it now.
      log.warn('Rolled back a transaction left open on a pooled connection');
      await exec(connection, 'ROLLBACK');
      await exec(connection, script);
    }
  } catch (error) {
    await rollback(connection, log);
    throw error;
  } finally {
    await knex.client.releaseConnection(connection);
  }
}

function exec(connection: ScriptConnection, sql: string): Promise<void> {
  return new Promise((resolve, reject) =>
    connection.exec(sql, (error) => (error ? reject(error) : resolve())),
  );
}

async function rollback(connection: ScriptConnection, log: Logger): Promise<void> {
  try {
    await exec(connection, 'ROLLBACK');
  } catch (error) {
    // Nothing to undo when BEGIN failed, or when SQLite already rolled back by itself.
    if (/no transaction is active/.test(sqliteMessage(error))) return;
    log.error({ err: error }, 'ROLLBACK failed; the connection may still be inside a transaction');
  }
}
