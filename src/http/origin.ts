/**
 * Returns whether a browser request from `origin` may use the API: requests without an Origin
 * header (curl, servers, most non-browser clients), requests from the server's own origin (for
 * example GraphiQL), and origins listed in CORS_ORIGINS. Everything else is another web site,
 * which must not drive a server the browser can reach, such as one on 127.0.0.1.
 */
export function isAllowedOrigin(
  origin: string | undefined,
  host: string | undefined,
  allowed: readonly string[],
): boolean {
  if (origin === undefined || origin === '') return true;
  if (allowed.includes('*') || allowed.includes(origin)) return true;
  if (host === undefined) return false;
  try {
    return new URL(origin).host === host;
  } catch {
    return false;
  }
}
