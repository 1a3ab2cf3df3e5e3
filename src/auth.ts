import { createHash, timingSafeEqual } from 'node:crypto';
import type { Caller } from './services/task-service';

/** Every request acts as this one local user until API keys exist. */
export const LOCAL_USER_ID = 'local';

/** What a request carries that may identify its caller. */
export interface Credentials {
  /** The `Authorization` header (HTTP, SSE) or `connectionParams.authorization` (graphql-ws). */
  authorization?: string | null;
}

/**
 * Resolves the caller of a request. A bearer token equal to the configured admin token makes the
 * caller an admin; anything else is the local user without admin rights.
 */
export function resolveCaller(credentials: Credentials, adminToken: string | undefined): Caller {
  const token = parseBearer(credentials.authorization);
  const isAdmin = adminToken !== undefined && token !== null && sameSecret(token, adminToken);
  return { userId: LOCAL_USER_ID, isAdmin };
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
