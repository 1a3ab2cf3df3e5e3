/** Result codes of the SQLite driver that mean "another connection holds the lock, try again". */
const BUSY_CODES: ReadonlySet<string> = new Set(['SQLITE_BUSY', 'SQLITE_LOCKED']);

/** How far down a `cause` chain to look. */
const MAX_DEPTH = 10;

interface ErrorLike {
  message?: unknown;
  code?: unknown;
  cause?: unknown;
}

/**
 * `error` and its causes, outermost first. Duck-typed rather than `instanceof Error`: the driver
 * creates its errors in native code, which under jest belongs to another realm.
 */
function* causeChain(error: unknown): Generator<ErrorLike> {
  let current = error;
  for (
    let depth = 0;
    depth < MAX_DEPTH && typeof current === 'object' && current !== null;
    depth += 1
  ) {
    const link = current as ErrorLike;
    yield link;
    current = link.cause;
  }
}

/** Returns the `SQLITE_*` code of `error` or of the first error in its `cause` chain that has one. */
export function sqliteErrorCode(error: unknown): string | undefined {
  for (const link of causeChain(error)) {
    if (typeof link.code === 'string' && link.code.startsWith('SQLITE_')) return link.code;
  }
  return undefined;
}

/**
 * Returns whether `error` (or its cause) is SQLITE_BUSY or SQLITE_LOCKED: the lock was held by
 * another connection for longer than the busy timeout. Retrying the whole transaction can succeed.
 */
export function isBusyError(error: unknown): boolean {
  const code = sqliteErrorCode(error);
  return code !== undefined && BUSY_CODES.has(code);
}

/**
 * Returns whether `error` (or its cause) is a violated UNIQUE or PRIMARY KEY constraint, such as a
 * second task with the same `(user_id, idempotency_key)`.
 */
export function isUniqueViolation(error: unknown): boolean {
  if (sqliteErrorCode(error) !== 'SQLITE_CONSTRAINT') return false;
  return /\b(UNIQUE|PRIMARY KEY) constraint failed/.test(sqliteMessage(error));
}

/**
 * The driver's own message, without the SQL text that knex puts in front of it, so messages stay
 * short and never repeat a statement (which can be long).
 */
export function sqliteMessage(error: unknown): string {
  const code = sqliteErrorCode(error);
  let outermost: string | undefined;
  for (const link of causeChain(error)) {
    if (typeof link.message !== 'string') continue;
    outermost ??= link.message;
    const start = code === undefined ? -1 : link.message.lastIndexOf(`${code}:`);
    if (start >= 0) return link.message.slice(start);
  }
  return outermost ?? String(error);
}
