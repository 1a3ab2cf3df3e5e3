// Creates, lists and revokes API keys in the database that DATABASE_URL names:
//   npm run keys -- create --user alice [--role admin] [--label "laptop"]
//   npm run keys -- list
//   npm run keys -- revoke <id-or-prefix>
import { parseArgs } from 'node:util';
import pino from 'pino';
import { ConfigError, loadConfig } from '../src/config';
import type { ApiKeyRecord, ValidNewApiKey } from '../src/db/api-key-store';
import { ApiKeyRole, validateNewApiKey } from '../src/db/api-key-store';
import { TaskStore } from '../src/db/task-store';
import { isTaskwireError } from '../src/errors';

const USAGE = `Usage: npm run keys -- COMMAND [OPTIONS]

Manages the API keys in the database that DATABASE_URL names (default file:./data/taskwire.db).
Pending migrations are applied first.

Commands:
  create --user USER_ID [--role user|admin] [--label TEXT]
      Issues a key for USER_ID (1 to 128 printable characters) with the role (default user) and
      an optional label of up to 200 characters. The key is printed once, alone on stdout, and
      cannot be shown again: only its SHA-256 hash is stored.
  list
      Prints every key as a table: prefix, user, role, label, creation, last use, revocation.
      Times are UTC. Last use is recorded at most once a minute per key.
  revoke ID_OR_PREFIX
      Revokes the key with this id or prefix (as shown by list). Revoking a revoked key succeeds
      and changes nothing.

Options:
  -h, --help   Prints this help.

Exit status: 0 on success, 1 when the command failed (such as an unknown key or a database
error), 2 on invalid usage.`;

/** Invalid command-line usage, which exits with status 2. */
class UsageError extends Error {}

type Command =
  | { name: 'help' }
  | { name: 'create'; input: ValidNewApiKey }
  | { name: 'list' }
  | { name: 'revoke'; idOrPrefix: string };

/** Command-line option of each field that `validateNewApiKey` may reject. */
const OPTION_OF_FIELD: Record<string, string> = {
  userId: '--user',
  role: '--role',
  label: '--label',
};

const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;
const MAX_LABEL_COLUMN_CHARS = 40;

function parseCommand(argv: string[]): Command {
  const { values, positionals } = parseCommandLine(argv);
  const [name, ...operands] = positionals;
  if (values.help === true || name === 'help') return { name: 'help' };
  const options = Object.keys(values).map((option) => `--${option}`);
  switch (name) {
    case 'create':
      if (operands.length > 0) {
        throw new UsageError(`create takes no operands, got ${operands[0]}.`);
      }
      return { name, input: parseCreateInput(values) };
    case 'list':
      if (operands.length > 0 || options.length > 0) {
        throw new UsageError(
          `list takes no operands or options, got ${[...operands, ...options][0]}.`,
        );
      }
      return { name };
    case 'revoke':
      if (operands.length !== 1 || options.length > 0) {
        throw new UsageError('revoke takes exactly one operand: the id or prefix of the key.');
      }
      return { name, idOrPrefix: operands[0] };
    case undefined:
      throw new UsageError('Missing command: expected create, list or revoke.');
    default:
      throw new UsageError(`Unknown command ${name}: expected create, list or revoke.`);
  }
}

function parseCommandLine(argv: string[]) {
  try {
    return parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        user: { type: 'string' },
        role: { type: 'string' },
        label: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

function parseCreateInput(values: {
  user?: string;
  role?: string;
  label?: string;
}): ValidNewApiKey {
  if (values.user === undefined) {
    throw new UsageError('Missing --user: create requires --user USER_ID.');
  }
  try {
    return validateNewApiKey({
      userId: values.user,
      role: (values.role ?? ApiKeyRole.USER) as ApiKeyRole,
      label: values.label,
    });
  } catch (error) {
    if (!isTaskwireError(error)) throw error;
    const field = String(error.extensions.field);
    const option = OPTION_OF_FIELD[field] ?? field;
    throw new UsageError(error.message.replace(`Invalid ${field}:`, `Invalid ${option}:`));
  }
}

async function runCommand(
  store: TaskStore,
  command: Exclude<Command, { name: 'help' }>,
): Promise<number> {
  switch (command.name) {
    case 'create':
      await createKey(store, command.input);
      return 0;
    case 'list':
      printTable(await store.apiKeys.list());
      return 0;
    case 'revoke':
      return revokeKey(store, command.idOrPrefix);
  }
}

async function createKey(store: TaskStore, input: ValidNewApiKey): Promise<void> {
  const { key, record } = await store.apiKeys.create(input);
  const label = record.label === null ? 'no label' : `label ${JSON.stringify(record.label)}`;
  console.error(
    `Created API key ${record.prefix}… for user ${JSON.stringify(record.userId)} ` +
      `(role ${record.role}, ${label}, id ${record.id}).`,
  );
  console.error(
    'WARNING: copy the key below now. It cannot be shown again, because only its hash is stored.',
  );
  // The one place where a key is printed: stdout carries nothing else, so scripts can capture it.
  console.log(key);
}

async function revokeKey(store: TaskStore, idOrPrefix: string): Promise<number> {
  const started = Date.now();
  const record = await store.apiKeys.revoke(idOrPrefix);
  if (record === null) {
    console.error(
      `No API key has the id or prefix ${JSON.stringify(idOrPrefix)}. ` +
        'Run `npm run keys -- list` to see the prefixes.',
    );
    return EXIT_FAILURE;
  }
  const revokedAt = record.revokedAt ?? new Date(started);
  const when = formatTime(revokedAt);
  const details = `user ${JSON.stringify(record.userId)}, id ${record.id}`;
  if (revokedAt.getTime() < started) {
    console.log(`API key ${record.prefix}… (${details}) was already revoked at ${when}.`);
  } else {
    console.log(`Revoked API key ${record.prefix}… (${details}) at ${when}.`);
  }
  return 0;
}

function printTable(records: ApiKeyRecord[]): void {
  if (records.length === 0) {
    console.log('No API keys.');
    return;
  }
  const header = ['PREFIX', 'USER', 'ROLE', 'LABEL', 'CREATED', 'LAST USED', 'REVOKED'];
  const rows = records.map((record) => [
    record.prefix,
    record.userId,
    record.role,
    truncate(record.label ?? '-', MAX_LABEL_COLUMN_CHARS),
    formatTime(record.createdAt),
    formatTime(record.lastUsedAt),
    formatTime(record.revokedAt),
  ]);
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => row[column].length)),
  );
  for (const row of [header, ...rows]) {
    console.log(
      row
        .map((cell, column) => cell.padEnd(widths[column]))
        .join('  ')
        .trimEnd(),
    );
  }
}

/** UTC time to the second, such as `2026-12-04 18:25:37Z`, or `-` for none. */
function formatTime(date: Date | null): string {
  return date === null ? '-' : `${date.toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

function truncate(text: string, maxChars: number): string {
  return text.length > maxChars ? `${text.slice(0, maxChars - 1)}…` : text;
}

async function openStore(): Promise<TaskStore> {
  const config = loadConfig();
  // Warnings and errors only, on stderr, so that stdout carries just the command's output.
  const logger = pino({ level: 'warn' }, pino.destination({ fd: 2, sync: true }));
  return TaskStore.open({
    databaseUrl: config.DATABASE_URL,
    busyTimeoutMs: config.DB_BUSY_TIMEOUT_MS,
    flushIntervalMs: config.DB_FLUSH_INTERVAL_MS,
    flushMaxRecords: config.DB_FLUSH_MAX_RECORDS,
    logger,
  });
}

async function main(argv: string[]): Promise<number> {
  const command = parseCommand(argv);
  if (command.name === 'help') {
    console.log(USAGE);
    return 0;
  }
  const store = await openStore();
  try {
    return await runCommand(store, command);
  } finally {
    await store.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof UsageError) {
      console.error(`${error.message}\nRun \`npm run keys -- --help\` for usage.`);
      process.exitCode = EXIT_USAGE;
    } else if (error instanceof ConfigError || isTaskwireError(error)) {
      console.error(error.message);
      process.exitCode = EXIT_FAILURE;
    } else {
      console.error(error);
      process.exitCode = EXIT_FAILURE;
    }
  },
);
