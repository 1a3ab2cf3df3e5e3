import { GraphQLError } from 'graphql';
import type { ExecutionResult } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { isAsyncIterable } from 'graphql-yoga';
import { ErrorCode } from '../errors';

/**
 * Gives request errors a code. graphql-js reports invalid variables (a wrong type, a missing
 * required value) as a result with `errors` and no `data`, and without `extensions.code`; such an
 * error is always the client's, so it becomes BAD_USER_INPUT.
 */
export function useRequestErrorCodes(): Plugin {
  const tag = (result: ExecutionResult): ExecutionResult => {
    if (result.data !== undefined || !result.errors) return result;
    return { ...result, errors: result.errors.map(withCode) };
  };
  return {
    onExecute: () => ({
      onExecuteDone: ({ result, setResult }) => {
        if (!isAsyncIterable(result)) setResult(tag(result));
      },
    }),
    onSubscribe: () => ({
      onSubscribeResult: ({ result, setResult }) => {
        if (!isAsyncIterable(result)) setResult(tag(result));
      },
    }),
  };
}

function withCode(error: GraphQLError): GraphQLError {
  // An error caused by anything but a GraphQLError is a server fault, which masking handles.
  const causedByServer = error.originalError && !(error.originalError instanceof GraphQLError);
  if (error.extensions.code !== undefined || causedByServer) return error;
  return new GraphQLError(error.message, {
    nodes: error.nodes,
    source: error.source,
    positions: error.positions,
    path: error.path,
    extensions: { ...error.extensions, code: ErrorCode.BAD_USER_INPUT },
  });
}
