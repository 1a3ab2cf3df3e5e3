import { createHash, timingSafeEqual } from 'node:crypto';
import type { ApiKeyStore } from './db/api-key-store';
import { ErrorCode, TaskwireError } from './errors';
import type { Logger } from './logger';
import type { Caller } from './services/task-service';

/** Every request acts as this one local user when AUTH_MODE is `none`. */
export const LOCAL_USER_ID = 'local';

/** User id of a caller that presented the ADMIN_TOKEN. */
export const ADMIN_TOKEN_USER_ID = 'admin';

/** Options for {@link Authenticator}. */
export interface AuthenticatorOptions {
  /** `apikey` requires a valid key on every request; `none` serves everyone as the local user. */
  mode: 'none' | 'apikey';
  apiKeys: ApiKeyStore;
  /** Bearer token that makes the caller an admin in either mode. */
  adminToken?: string;
  logger: Logger;
}

/** Thrown for a missing, malformed, unknown or revoked credential. */
export function unauthenticated(message: string): TaskwireError {
  return new TaskwireError(ErrorCode.UNAUTHENTICATED, message, {
    extensions: { http: { status: 401, headers: { 'www-authenticate': 'Bearer' } } },
  });
}

/**
 * Turns the credential of a request into its caller. The credential is a bearer token: the
 * `Authorization` header over HTTP and SSE, `connectionParams.authorization` over graphql-ws.
 */
export class Authenticator {
  constructor(private readonly options: AuthenticatorOptions) {}

  get mode(): 'none' | 'apikey' {
    return this.options.mode;
  }

  /**
   * Resolves the caller, or throws UNAUTHENTICATED when a key is required and missing or
   * invalid. A wrong key is rejected in either mode, so a typo never silently acts as someone else.
   */
  async authenticate(authorization: string | null | undefined): Promise<Caller> {
    const token = parseBearer(authorization);
    const { adminToken, mode, apiKeys } = this.options;
    if (token !== null && adminToken !== undefined && sameSecret(token, adminToken)) {
      return { userId: ADMIN_TOKEN_USER_ID, isAdmin: true };
    }
    if (token === null) {
      if (authorization) throw unauthenticated('Malformed credential: send "Bearer <API key>".');
      if (mode === 'none') return { userId: LOCAL_USER_ID, isAdmin: false };
      throw unauthenticated('An API key is required: send "Authorization: Bearer <API key>".');
    }
    const key = await apiKeys.verify(token);
    if (!key) throw unauthenticated('The API key is invalid or revoked.');
    apiKeys.touch(key.id).catch((error: unknown) => {
      this.options.logger.warn({ err: error, keyId: key.id }, 'Failed to record API key use');
    });
    return { userId: key.userId, isAdmin: key.role === 'admin' };
  }
}

function parseBearer(header: string | null | undefined): string | null {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return match ? match[1] : null;
}

/** Compares two secrets in time that does not depend on where they differ. */
function sameSecret(a: string, b: string): boolean {
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(a), digest(b));
}
