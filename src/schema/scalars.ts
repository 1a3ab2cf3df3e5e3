import { GraphQLError, Kind } from 'graphql';
import { ErrorCode } from '../errors';
import { builder } from './builder';

/** A calendar date, optionally with a time and then a required `Z` or offset. */
const ISO_DATE_TIME =
  /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(?:Z|[+-](\d{2}):(\d{2})))?$/;

function parseDateTime(value: unknown): Date {
  const date = typeof value === 'string' ? toDate(value) : undefined;
  if (!date) {
    throw new GraphQLError(
      `DateTime expects an ISO 8601 date or date-time with Z or an offset, for example 2026-12-04T17:45:38Z; got ${JSON.stringify(value)?.slice(0, 100)}.`,
      { extensions: { code: ErrorCode.BAD_USER_INPUT } },
    );
  }
  return date;
}

/** Parses `text` strictly: a day that does not exist, such as February 30, is refused. */
function toDate(text: string): Date | undefined {
  const match = ISO_DATE_TIME.exec(text);
  if (!match) return undefined;
  const [, year, month, day, hour = '0', minute = '0', second = '0', offsetHour, offsetMinute] =
    match;
  const calendar = new Date(Date.UTC(Number(year), Number(month) - 1, Number(day)));
  const realDay =
    calendar.getUTCFullYear() === Number(year) &&
    calendar.getUTCMonth() === Number(month) - 1 &&
    calendar.getUTCDate() === Number(day);
  const realTime = Number(hour) < 24 && Number(minute) < 60 && Number(second) < 60;
  const realOffset =
    offsetHour === undefined || (Number(offsetHour) < 24 && Number(offsetMinute) < 60);
  if (!realDay || !realTime || !realOffset) return undefined;
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

/** An instant as an ISO 8601 string in UTC, for example `2026-12-04T17:45:38.000Z`. */
export const DateTimeScalar = builder.scalarType('DateTime', {
  description: 'An instant as an ISO 8601 string in UTC, for example 2026-12-04T17:45:38.000Z.',
  serialize: (value) => value.toISOString(),
  parseValue: parseDateTime,
  parseLiteral: (ast) => parseDateTime(ast.kind === Kind.STRING ? ast.value : undefined),
});
