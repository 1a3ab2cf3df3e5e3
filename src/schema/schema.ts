import type { GraphQLSchema } from 'graphql';
import { builder } from './builder';
import './task';
import './metrics';
import './admin';

/** Builds the executable schema from every area's types. */
export function createSchema(): GraphQLSchema {
  return builder.toSchema({ sortSchema: false });
}
