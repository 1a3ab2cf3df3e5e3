import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ConfigError } from '../../src/config';
import { Task, TASK_COLUMNS, TASK_INDEXES, TASK_TABLE } from '../../src/db/entities/task.entity';
import { migrations } from '../../src/db/migrations';
import { createOrm, parseDatabaseUrl, readPragmas } from '../../src/db/orm';
import { createRecordingLogger, silentLogger, useDatabaseFixtures } from './db-fixtures';

const fixtures = useDatabaseFixtures();

async function listSchema(orm: Awaited<ReturnType<typeof createOrm>>) {
  return orm.em
    .getConnection()
    .execute<{ type: string; name: string }[]>(
      "select type, name from sqlite_master where name not like 'sqlite_%' order by type, name",
    );
}

describe('parseDatabaseUrl', () => {
  it('resolves file:PATH against the working directory', () => {
    expect(parseDatabaseUrl('file:./data/taskwire.db')).toEqual({
      filename: resolve('data/taskwire.db'),
    });
  });

  it('accepts absolute file: URLs, bare paths and in-memory databases', () => {
    expect(parseDatabaseUrl('file:///var/lib/taskwire.db').filename).toBe('/var/lib/taskwire.db');
    expect(parseDatabaseUrl('file:/var/lib/taskwire.db').filename).toBe('/var/lib/taskwire.db');
    expect(parseDatabaseUrl('tasks.db').filename).toBe(resolve('tasks.db'));
    expect(parseDatabaseUrl('file::memory:').filename).toBe(':memory:');
  });

  it('rejects postgres URLs as not supported yet, without repeating credentials', () => {
    const parse = () => parseDatabaseUrl('postgres://admin:s3cret@db.internal:5432/taskwire');
    expect(parse).toThrow(ConfigError);
    expect(parse).toThrow(/PostgreSQL is not supported yet/);
    expect(parse).not.toThrow(/s3cret/);
  });

  it('rejects other schemes and file: URLs with query parameters', () => {
    expect(() => parseDatabaseUrl('mysql://localhost/taskwire')).toThrow(/got a mysql: URL/);
    expect(() => parseDatabaseUrl('file:./tasks.db?mode=ro')).toThrow(/query parameters/);
    expect(() => parseDatabaseUrl('file:')).toThrow(/needs a path/);
  });
});

describe('createOrm', () => {
  it('creates the parent directory of the database file', async () => {
    const nested = join(fixtures.dir(), 'a', 'b', 'tasks.db');
    await fixtures.openOrm({ databaseUrl: `file:${nested}` });
    expect(await readdir(join(fixtures.dir(), 'a', 'b'))).toContain('tasks.db');
  });

  it('sets WAL, synchronous NORMAL and the busy timeout on the connection', async () => {
    const orm = await fixtures.openOrm({ busyTimeoutMs: 1234 });
    expect(await readPragmas(orm)).toEqual({
      journalMode: 'wal',
      synchronous: 1,
      busyTimeout: 1234,
    });
    const [{ foreign_keys: foreignKeys }] = await orm.em
      .getConnection()
      .execute<{ foreign_keys: number }[]>('pragma foreign_keys');
    expect(foreignKeys).toBe(1);
  });

  it('logs the pragmas it read back at info in the db area', async () => {
    const { logger, lines } = createRecordingLogger('info');
    await fixtures.openOrm({ logger });
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 30,
        area: 'db',
        journalMode: 'wal',
        synchronous: 1,
        busyTimeout: 5000,
      }),
    );
  });

  it('opens an in-memory database', async () => {
    const orm = await fixtures.openOrm({ databaseUrl: 'file::memory:' });
    expect((await readPragmas(orm)).journalMode).toBe('memory');
    expect(await listSchema(orm)).toContainEqual({ type: 'table', name: TASK_TABLE });
  });

  it('rejects a negative busy timeout before opening anything', async () => {
    await expect(
      createOrm({ databaseUrl: fixtures.databaseUrl(), busyTimeoutMs: -1, logger: silentLogger }),
    ).rejects.toThrow('Expected busyTimeoutMs to be an integer >= 0, got -1.');
  });

  it('logs SQL statements at debug level in debug mode', async () => {
    const { logger, lines } = createRecordingLogger('debug');
    const orm = await fixtures.openOrm({ logger, debug: true });
    await orm.em.getConnection().getKnex().raw('select 42 as answer');
    expect(lines).toContainEqual(
      expect.objectContaining({ level: 20, orm: 'query', msg: 'select 42 as answer' }),
    );
  });
});

describe('migrations', () => {
  it('create the task table with its indexes', async () => {
    const orm = await fixtures.openOrm();
    const schema = await listSchema(orm);
    expect(schema).toContainEqual({ type: 'table', name: TASK_TABLE });
    for (const index of Object.values(TASK_INDEXES)) {
      expect(schema).toContainEqual({ type: 'index', name: index });
    }
  });

  it('are recorded once and not run again, in the same process or after a restart', async () => {
    const orm = await fixtures.openOrm();
    expect(await orm.getMigrator().up()).toEqual([]);
    const executed = await orm.getMigrator().getExecutedMigrations();
    expect(executed.map((migration) => migration.name)).toEqual(
      migrations.map((migration) => migration.name),
    );
    await orm.close(true);

    const { logger, lines } = createRecordingLogger('info');
    await fixtures.openOrm({ logger });
    expect(lines.some((line) => line.msg === 'Applied database migrations')).toBe(false);
  });

  it('map every TaskRecord field to the column the store queries', async () => {
    const orm = await fixtures.openOrm({ databaseUrl: 'file::memory:' });
    const { properties } = orm.getMetadata().get(Task.meta.className);
    const columns = Object.values(properties).map((prop) => [prop.name, prop.fieldNames[0]]);
    expect(Object.fromEntries(columns)).toEqual(TASK_COLUMNS);
  });

  it('match the entities, so no new migration is needed', async () => {
    const orm = await fixtures.openOrm();
    expect(await orm.getMigrator().checkMigrationNeeded()).toBe(false);
  });

  it('keep the rows of an existing database', async () => {
    const orm = await fixtures.openOrm();
    await orm.em
      .getConnection()
      .getKnex()
      .raw(
        `insert into task (id, user_id, status, priority, prompt, model, params, cached, attempts, last_seq, created_at)
         values ('t1', 'u', 'QUEUED', 0, 'p', 'm', '{}', 0, 0, 0, 1)`,
      );
    await orm.close(true);
    const reopened = await fixtures.openOrm();
    const rows = await reopened.em.getConnection().execute('select id from task');
    expect(rows).toEqual([{ id: 't1' }]);
  });
});
