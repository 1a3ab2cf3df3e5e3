import SchemaBuilder from '@pothos/core';
import type { GraphQLContext } from './context';

/** The Pothos builder every schema file adds its types to. Fields are non-null unless marked. */
export const builder = new SchemaBuilder<{
  Context: GraphQLContext;
  DefaultFieldNullability: false;
  Scalars: { DateTime: { Input: Date; Output: Date } };
}>({ defaultFieldNullability: false });

builder.queryType({});
builder.mutationType({});
builder.subscriptionType({});
