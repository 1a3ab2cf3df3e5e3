import { GraphQLError } from 'graphql';
import type { ExecutionResult } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { isAsyncIterable } from 'graphql-yoga';
import { ErrorCode } from '../errors';

/** The object a plugin's `Name` hook returns to see the operation's result. */
type HookResult<Name extends 'onExecute' | 'onSubscribe'> = Exclude<
  Awaited<ReturnType<NonNullable<Plugin[Name]>>>,
  void
>;

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
  // Made once and handed to every operation: the hooks keep no per-operation state.
  const afterExecute: HookResult<'onExecute'> = {
    onExecuteDone: ({ result, setResult }) => {
      if (!isAsyncIterable(result)) setResult(tag(result));
    },
  };
  const afterSubscribe: HookResult<'onSubscribe'> = {
    onSubscribeResult: ({ result, setResult }) => {
      if (!isAsyncIterable(result)) setResult(tag(result));
    },
  };
  return {
    onExecute: () => afterExecute,
    onSubscribe: () => afterSubscribe,
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
