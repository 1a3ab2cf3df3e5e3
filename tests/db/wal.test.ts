import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { CheckpointMode } from '../../src/db/wal-checkpointer';
import { makeTask, sleep, useDatabaseFixtures } from './db-fixtures';

/** Size of the `-wal` file in bytes; 0 when it does not exist. */
async function walBytes(dir: string): Promise<number> {
  try {
    return (await stat(join(dir, 'taskwire.db-wal'))).size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
}

const KIB = 1024;
/** About 4 KiB of prompt, so that every row fills a page of its own. */
const BIG_PROMPT = 'x'.repeat(4 * KIB);

describe('WAL upkeep', () => {
  const db = useDatabaseFixtures();

  it('sets journal_size_limit on the connection', async () => {
    const store = await db.openStore({ journalSizeLimitBytes: 256 * KIB });
    const rows = await store.orm.em
      .getConnection()
      .execute<Record<string, unknown>[]>('PRAGMA journal_size_limit');
    expect(Object.values(rows[0])[0]).toBe(256 * KIB);
  });

  it('defaults journal_size_limit to 64 MiB', async () => {
    const store = await db.openStore();
    const rows = await store.orm.em
      .getConnection()
      .execute<Record<string, unknown>[]>('PRAGMA journal_size_limit');
    expect(Object.values(rows[0])[0]).toBe(64 * KIB * KIB);
  });

  it('keeps the -wal file bounded under steady writes', async () => {
    const limit = 512 * KIB;
    const store = await db.openStore({ journalSizeLimitBytes: limit, checkpointIntervalMs: 20 });
    const samples: number[] = [];
    // 40 rounds of 100 rows of 4 KiB: about 16 MiB written through the WAL.
    for (let round = 0; round < 40; round += 1) {
      const inserts = Array.from({ length: 100 }, () =>
        store.insert(makeTask({ prompt: BIG_PROMPT })),
      );
      await Promise.all(inserts);
      samples.push(await walBytes(db.dir()));
    }
    // SQLite's automatic checkpoint starts at 1,000 pages, 4 MiB with 4 KiB pages. A round adds
    // about 0.5 MiB more before the next reset truncates the file back to the limit.
    expect(Math.max(...samples)).toBeLessThan(6 * KIB * KIB);
    expect(store.checkpointer.stats.checkpoints).toBeGreaterThan(0);
    expect(store.checkpointer.stats.failures).toBe(0);
  });

  it('shrinks the -wal file to the limit after one large transaction', async () => {
    const limit = 256 * KIB;
    const store = await db.openStore({
      journalSizeLimitBytes: limit,
      checkpointIntervalMs: 0,
      flushMaxRecords: 5000,
      flushIntervalMs: 50,
    });
    // One commit of 2,000 rows of 4 KiB grows the WAL to about 8 MiB.
    await Promise.all(
      Array.from({ length: 2000 }, () => store.insert(makeTask({ prompt: BIG_PROMPT }))),
    );
    const peak = await walBytes(db.dir());
    expect(peak).toBeGreaterThan(4 * KIB * KIB);
    await store.checkpointer.checkpoint(CheckpointMode.PASSIVE);
    // The WAL is reset, and truncated to the limit, by the first write after a full checkpoint.
    await store.insert(makeTask());
    expect(await walBytes(db.dir())).toBeLessThanOrEqual(limit);
  });

  it('runs PASSIVE checkpoints at the interval', async () => {
    const store = await db.openStore({ checkpointIntervalMs: 25 });
    await store.insert(makeTask());
    await sleep(150);
    expect(store.checkpointer.stats.checkpoints).toBeGreaterThanOrEqual(2);
    expect(store.checkpointer.stats.last?.busy).toBe(0);
  });

  it('leaves an empty -wal file after close', async () => {
    const store = await db.openStore({ checkpointIntervalMs: 0 });
    await Promise.all(
      Array.from({ length: 500 }, () => store.insert(makeTask({ prompt: BIG_PROMPT }))),
    );
    expect(await walBytes(db.dir())).toBeGreaterThan(0);
    await store.close();
    expect(await walBytes(db.dir())).toBe(0);
  });

  it('truncates the -wal file at close while another connection has it open', async () => {
    const store = await db.openStore({ checkpointIntervalMs: 0 });
    // A second connection stops SQLite from deleting the WAL when the store's connection closes,
    // so only the TRUNCATE checkpoint can empty it.
    const other = await db.openOrm();
    await Promise.all(
      Array.from({ length: 500 }, () => store.insert(makeTask({ prompt: BIG_PROMPT }))),
    );
    expect(await walBytes(db.dir())).toBeGreaterThan(0);
    await store.close();
    expect(store.checkpointer.stats.last?.busy).toBe(0);
    expect(await walBytes(db.dir())).toBe(0);
    await other.close(true);
  });

  it('rejects a negative checkpoint interval', async () => {
    await expect(db.openStore({ checkpointIntervalMs: -1 })).rejects.toThrow(
      'Expected intervalMs to be an integer >= 0, got -1.',
    );
  });
});
