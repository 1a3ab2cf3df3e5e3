import { GraphQLError, Kind } from 'graphql';
import { ErrorCode } from '../errors';
import { builder } from './builder';

function parseDateTime(value: unknown): Date {
  const date = typeof value === 'string' ? new Date(value) : undefined;
  if (!date || Number.isNaN(date.getTime())) {
    throw new GraphQLError(`DateTime expects an ISO 8601 string, got ${JSON.stringify(value)}.`, {
      extensions: { code: ErrorCode.BAD_USER_INPUT },
    });
  }
  return date;
}

/** An instant as an ISO 8601 string in UTC, for example `2026-12-04T17:45:38.000Z`. */
export const DateTimeScalar = builder.scalarType('DateTime', {
  description: 'An instant as an ISO 8601 string in UTC, for example 2026-12-04T17:45:38.000Z.',
  serialize: (value) => value.toISOString(),
  parseValue: parseDateTime,
  parseLiteral: (ast) => parseDateTime(ast.kind === Kind.STRING ? ast.value : undefined),
});
