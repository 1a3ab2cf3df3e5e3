import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { useDatabaseFixtures } from '../db/db-fixtures';

const fixtures = useDatabaseFixtures();

const ROOT = join(__dirname, '..', '..');
const KEY_LINE = /^tw_[A-Za-z0-9_-]{43}\n$/;

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `scripts/keys.ts` under tsx against the test's database and waits for it to exit. */
function runKeys(args: string[], databaseUrl = fixtures.databaseUrl()): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/keys.ts', ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, DATABASE_URL: databaseUrl },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 20_000,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function createKey(args: string[]): Promise<string> {
  const result = await runKeys(['create', ...args]);
  expect(result.stderr).toContain('cannot be shown again');
  expect(result.stdout).toMatch(KEY_LINE);
  expect(result.code).toBe(0);
  return result.stdout.trim();
}

describe('keys script', () => {
  it('creates a key that the store verifies', async () => {
    const key = await createKey(['--user', 'alice', '--role', 'admin', '--label', 'laptop']);

    const store = await fixtures.openStore();
    const record = await store.apiKeys.verify(key);

    expect(record).toMatchObject({ userId: 'alice', role: 'admin', label: 'laptop' });
  });

  it('lists keys without their secrets', async () => {
    const key = await createKey(['--user', 'alice', '--label', 'laptop']);
    const store = await fixtures.openStore();
    const [record] = await store.apiKeys.list();

    const result = await runKeys(['list']);

    expect(result.code).toBe(0);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^PREFIX\s+USER\s+ROLE\s+LABEL\s+CREATED\s+LAST USED\s+REVOKED$/);
    expect(lines[1]).toMatch(new RegExp(`^${record.prefix}\\s+alice\\s+user\\s+laptop\\s+\\d{4}-`));
    expect(result.stdout).not.toContain(key);
    expect(result.stdout).not.toContain(key.slice(record.prefix.length));
    expect(result.stderr).not.toContain(key);
  });

  it('revokes a key by prefix, and again without error', async () => {
    const key = await createKey(['--user', 'alice']);
    const prefix = key.slice(0, 12);

    const first = await runKeys(['revoke', prefix]);
    const second = await runKeys(['revoke', prefix]);

    expect(first.stdout).toContain(`Revoked API key ${prefix}`);
    expect(first.code).toBe(0);
    expect(second.stdout).toContain('was already revoked');
    expect(second.code).toBe(0);
    const store = await fixtures.openStore();
    expect(await store.apiKeys.verify(key)).toBeNull();
    const list = await runKeys(['list']);
    expect(list.stdout).toMatch(/\d{2}:\d{2}:\d{2}Z\n$/);
  });

  it('fails when revoking an unknown key', async () => {
    const result = await runKeys(['revoke', 'tw_unknown00']);

    expect(result.stderr).toContain('No API key has the id or prefix "tw_unknown00"');
    expect(result.code).toBe(1);
  });

  it('prints usage for --help', async () => {
    const result = await runKeys(['--help']);

    expect(result.stdout).toContain('Usage: npm run keys -- COMMAND');
    expect(result.code).toBe(0);
  });

  it.each([
    ['no command', [], 'Missing command'],
    ['an unknown command', ['rotate'], 'Unknown command rotate'],
    ['create without --user', ['create'], 'Missing --user'],
    ['an empty --user', ['create', '--user', ''], 'Invalid --user: expected 1 to 128'],
    ['an unknown role', ['create', '--user', 'a', '--role', 'root'], 'Invalid --role'],
    ['an unknown option', ['create', '--user', 'a', '--admin'], "Unknown option '--admin'"],
    ['revoke without an operand', ['revoke'], 'revoke takes exactly one operand'],
    ['list with an operand', ['list', 'all'], 'list takes no operands or options'],
  ])('exits with status 2 for %s', async (_case, args, message) => {
    const result = await runKeys(args);

    expect(result.stderr).toContain(message);
    expect(result.stderr).toContain('--help');
    expect(result.stdout).toBe('');
    expect(result.code).toBe(2);
    expect(existsSync(join(fixtures.dir(), 'taskwire.db'))).toBe(false);
  });

  it('exits with status 1 for an invalid DATABASE_URL', async () => {
    const result = await runKeys(['list'], 'mysql://127.0.0.1/keys');

    expect(result.stderr).toContain('DATABASE_URL: expected file:PATH');
    expect(result.code).toBe(1);
  });
});
