import type { SqlValue } from './task-row';

/**
 * SQL text with its values written in as literals, for a batch that runs as one script (see
 * `runWriteScript`): one call into the driver instead of one per statement.
 *
 * Every value is written so that it cannot end its literal. Numbers must be finite. Strings are
 * quoted with each `'` doubled, or written as hex bytes cast to text when they contain a NUL
 * character, because a NUL would end the script's text early. Identifiers come from the code,
 * never from input, and are checked against a plain-name pattern.
 */

const IDENTIFIER = /^[a-z_][a-z0-9_]*$/;

/** Quotes a table or column name. @throws Error for anything but a plain lower-case name. */
export function identifier(name: string): string {
  if (!IDENTIFIER.test(name)) throw new Error(`Not a plain SQL name: ${JSON.stringify(name)}`);
  return `"${name}"`;
}

/** Writes a value as an SQL literal. @throws RangeError for a number that is not finite. */
export function literal(value: SqlValue): string {
  if (value === null) return 'NULL';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new RangeError(`Cannot write ${value} to SQLite.`);
    return String(value);
  }
  if (value.includes('\u0000'))
    return `CAST(X'${Buffer.from(value, 'utf8').toString('hex')}' AS TEXT)`;
  return `'${value.replaceAll("'", "''")}'`;
}

/** `(a, b, c)` of literals. */
function tuple(values: readonly SqlValue[]): string {
  return `(${values.map(literal).join(', ')})`;
}

/** Builds `INSERT INTO table (columns) VALUES (...), (...)`, then `suffix` (an ON CONFLICT clause). */
export function insertSql(
  table: string,
  columns: readonly string[],
  rows: readonly (readonly SqlValue[])[],
  suffix = '',
): string {
  const names = columns.map(identifier).join(', ');
  const values = rows.map(tuple).join(', ');
  return `INSERT INTO ${identifier(table)} (${names}) VALUES ${values}${suffix ? ` ${suffix}` : ''}`;
}

/**
 * Sets `columns` of many rows in one statement: `UPDATE table SET ... FROM (VALUES ...)`, where
 * each VALUES row holds the key, then the new values in the order of `columns`.
 */
export function updateFromValuesSql(
  table: string,
  key: string,
  columns: readonly string[],
  rows: readonly (readonly SqlValue[])[],
): string {
  const assignments = columns.map(
    (column, index) => `${identifier(column)} = v.column${index + 2}`,
  );
  return (
    `UPDATE ${identifier(table)} SET ${assignments.join(', ')} ` +
    `FROM (VALUES ${rows.map(tuple).join(', ')}) AS v ` +
    `WHERE ${identifier(table)}.${identifier(key)} = v.column1`
  );
}
