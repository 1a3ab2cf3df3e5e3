import { GraphQLError } from 'graphql';

/** Stable error codes that clients read from `extensions.code`. */
export const ErrorCode = {
  BAD_USER_INPUT: 'BAD_USER_INPUT',
  NOT_FOUND: 'NOT_FOUND',
  CONFLICT: 'CONFLICT',
  QUEUE_FULL: 'QUEUE_FULL',
  RATE_LIMITED: 'RATE_LIMITED',
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  FORBIDDEN: 'FORBIDDEN',
  QUERY_TOO_COMPLEX: 'QUERY_TOO_COMPLEX',
  PROVIDER_ERROR: 'PROVIDER_ERROR',
  TIMEOUT: 'TIMEOUT',
  CANCELLED: 'CANCELLED',
  INTERRUPTED: 'INTERRUPTED',
  SHUTTING_DOWN: 'SHUTTING_DOWN',
  INTERNAL: 'INTERNAL_SERVER_ERROR',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Options for {@link TaskwireError}. */
export interface TaskwireErrorOptions {
  /** The error that caused this one; kept for logs, never sent to clients. */
  cause?: unknown;
  /** Extra `extensions` fields sent to the client next to `code`. */
  extensions?: Record<string, unknown>;
}

/**
 * An error whose message and code are safe to show to a client. Yoga passes `GraphQLError`s through
 * unmasked, so every error a client should read extends this class.
 */
export class TaskwireError extends GraphQLError {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options: TaskwireErrorOptions = {}) {
    super(message, { extensions: { ...options.extensions, code } });
    this.name = 'TaskwireError';
    this.code = code;
    if (options.cause !== undefined) {
      Object.defineProperty(this, 'cause', { value: options.cause, enumerable: false });
    }
  }
}

/** Returns whether `error` is a {@link TaskwireError} with the given code. */
export function isTaskwireError(error: unknown, code?: ErrorCode): error is TaskwireError {
  return error instanceof TaskwireError && (code === undefined || error.code === code);
}
