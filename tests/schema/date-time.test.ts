import type { GraphQLScalarType } from 'graphql';
import { createSchema } from '../../src/schema/schema';

const dateTime = createSchema().getType('DateTime') as GraphQLScalarType;

describe('DateTime', () => {
  it.each([
    ['2026-12-04T17:45:38.000Z', '2026-12-04T17:45:38.000Z'],
    ['2026-12-04T17:45:38Z', '2026-12-04T17:45:38.000Z'],
    ['2026-12-04T17:45Z', '2026-12-04T17:45:00.000Z'],
    ['2026-12-04T18:45:38+01:00', '2026-12-04T17:45:38.000Z'],
    ['2026-12-04', '2026-12-04T00:00:00.000Z'],
    ['2028-02-29T00:00:00Z', '2028-02-29T00:00:00.000Z'],
  ])('reads %s', (text, iso) => {
    expect((dateTime.parseValue(text) as Date).toISOString()).toBe(iso);
  });

  it.each([
    '2026-02-30T00:00:00Z',
    '2027-02-29',
    '2026-13-01',
    '2026-12-04T24:00:00Z',
    '2026-12-04T17:60:00Z',
    '2026-12-04T17:45:38',
    'December 4, 2026',
    'not-a-date',
    '',
  ])('refuses %j with BAD_USER_INPUT', (text) => {
    expect(() => dateTime.parseValue(text)).toThrow(
      expect.objectContaining({ extensions: { code: 'BAD_USER_INPUT' } }),
    );
  });

  it('refuses a number', () => {
    expect(() => dateTime.parseValue(1_700_000_000_000)).toThrow('DateTime expects');
  });
});
