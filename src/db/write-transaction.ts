import type { Knex } from '@mikro-orm/sqlite';
import type { Logger } from '../logger';
import { sqliteMessage } from './sqlite-errors';

/** What the work inside {@link runWriteTransaction} uses to reach the database. */
export interface WriteTransaction {
  /** The knex instance, for building queries. */
  readonly knex: Knex;
  /** Binds a query to the transaction's connection; `await` the result to run it. */
  run<Q extends Knex.ChainableInterface>(query: Q): Q;
}

/**
 * Runs `work` in one `BEGIN IMMEDIATE` transaction on a pool connection of its own, and commits.
 *
 * The transaction is driven by hand instead of through `knex.transaction()`: when COMMIT fails,
 * knex refuses the ROLLBACK ("Transaction query already complete") and returns the connection to
 * the pool still inside the transaction. Here any failure, COMMIT included, is followed by a
 * ROLLBACK on the same connection before it goes back to the pool. `BEGIN IMMEDIATE` takes the
 * write lock up front, so a busy database makes BEGIN wait (busy_timeout) rather than a later
 * statement fail half way.
 */
export async function runWriteTransaction<T>(
  knex: Knex,
  work: (transaction: WriteTransaction) => Promise<T>,
  log: Logger,
): Promise<T> {
  // Typed `any` by knex; it is whatever the dialect's driver hands out.
  const connection: unknown = await knex.client.acquireConnection();
  const run = <Q extends Knex.ChainableInterface>(query: Q): Q => query.connection(connection);
  try {
    await begin(knex, run, log);
    const result = await work({ knex, run });
    await run(knex.raw('COMMIT'));
    return result;
  } catch (error) {
    await rollback(knex, run, log);
    throw error;
  } finally {
    await knex.client.releaseConnection(connection);
  }
}

type Run = WriteTransaction['run'];

async function begin(knex: Knex, run: Run, log: Logger): Promise<void> {
  try {
    await run(knex.raw('BEGIN IMMEDIATE'));
  } catch (error) {
    if (!/within a transaction/.test(sqliteMessage(error))) throw error;
    // Someone left this connection inside a transaction; no one else can be using it now.
    log.warn('Rolled back a transaction left open on a pooled connection');
    await run(knex.raw('ROLLBACK'));
    await run(knex.raw('BEGIN IMMEDIATE'));
  }
}

async function rollback(knex: Knex, run: Run, log: Logger): Promise<void> {
  try {
    await run(knex.raw('ROLLBACK'));
  } catch (error) {
    // SQLite rolls back by itself after some errors; then there is nothing left to undo.
    if (/no transaction is active/.test(sqliteMessage(error))) return;
    log.error({ err: error }, 'ROLLBACK failed; the connection may still be inside a transaction');
  }
}
