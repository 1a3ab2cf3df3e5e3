import { z } from 'zod';

const integer = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const booleanFlag = (fallback: boolean) =>
  z
    .enum(['true', 'false', '1', '0'])
    .transform((value) => value === 'true' || value === '1')
    .default(fallback);

const configSchema = z.object({
  /** TCP port of the HTTP and WebSocket server. @default 4000 */
  PORT: integer(0, 65535).default(4000),
  /** Interface to listen on. @default 127.0.0.1 */
  HOST: z.string().min(1).default('127.0.0.1'),
  /** `file:PATH` for SQLite. @default file:./data/taskwire.db */
  DATABASE_URL: z.string().min(1).default('file:./data/taskwire.db'),
  /** Provider that generates text. @default auto */
  LLM_PROVIDER: z.enum(['auto', 'openai', 'llama', 'demo']).default('auto'),
  /**
   * Milliseconds between two tokens of the demo provider; above 0 its tasks last long enough to
   * watch, cancel or interrupt. @default 0
   */
  DEMO_TOKEN_DELAY_MS: integer(0, 60_000).default(0),
  /** Base URL of an OpenAI-compatible API, with or without the trailing `/v1`. */
  LLM_BASE_URL: z.url({ protocol: /^https?$/ }).optional(),
  /** Bearer token sent to the OpenAI-compatible API. */
  LLM_API_KEY: z.string().min(1).optional(),
  /** Model used when a task names none. */
  LLM_MODEL: z.string().min(1).optional(),
  /** Path of a GGUF model file for the embedded llama.cpp engine. */
  LLM_MODEL_PATH: z.string().min(1).optional(),
  /** CPU threads of the embedded llama.cpp engine. @default os.availableParallelism() - 1, at least 1 */
  LLM_THREADS: integer(1, 1024).optional(),
  /** Tokens of context per task for the embedded engine, prompt and reply together. @default 4096 */
  LLM_CONTEXT_SIZE: integer(128, 1_048_576).default(4096),
  /** Milliseconds the embedded engine may take to load its model. @default 120000 */
  LLM_LOAD_TIMEOUT_MS: integer(1000, 3_600_000).default(120_000),
  /** Milliseconds to wait for the upstream's response headers and between streamed chunks. @default 60000 */
  LLM_REQUEST_TIMEOUT_MS: integer(100, 3_600_000).default(60_000),
  /** Number of tasks generated at once. @default 2 */
  WORKERS: integer(1, 256).default(2),
  /** Number of tasks that may wait in the queue. @default 100 */
  QUEUE_MAX_SIZE: integer(1, 1_000_000).default(100),
  /** Milliseconds of waiting that raise a queued task's priority by one. @default 10000 */
  QUEUE_AGING_MS: integer(1, 86_400_000).default(10_000),
  /** Milliseconds a task may run, retries included, before it fails with TIMEOUT. @default 120000 */
  TASK_TIMEOUT_MS: integer(10, 86_400_000).default(120_000),
  /** Attempts per task, counting the first, for transient provider errors. @default 3 */
  TASK_MAX_ATTEMPTS: integer(1, 20).default(3),
  /** Milliseconds before the first retry; each further retry doubles it. @default 500 */
  TASK_RETRY_BASE_MS: integer(0, 600_000).default(500),
  /** Largest `maxTokens` a client may ask for. @default 32768 */
  TASK_MAX_TOKENS: integer(1, 10_000_000).default(32_768),
  /** Maximum prompt length in characters. @default 100000 */
  PROMPT_MAX_CHARS: integer(1, 10_000_000).default(100_000),
  /** Milliseconds `generate` waits when the client gives no `waitMs`. @default 15000 */
  GENERATE_WAIT_MS: integer(0, 600_000).default(15_000),
  /** Upper bound for a client's `waitMs`. @default 120000 */
  GENERATE_MAX_WAIT_MS: integer(0, 3_600_000).default(120_000),
  /** Hours a finished task is kept before the background purge deletes it. @default 168 */
  RESULT_RETENTION_HOURS: z.coerce.number().positive().max(876_000).default(168),
  /** Milliseconds between two runs of the retention purge. @default 600000 */
  RETENTION_SWEEP_MS: integer(1000, 86_400_000).default(600_000),
  /**
   * Milliseconds the writer collects records before it commits them; 0 commits on the next turn
   * of the event loop, and records that arrive while a commit runs still share the next one.
   * @default 0
   */
  DB_FLUSH_INTERVAL_MS: integer(0, 10_000).default(0),
  /** Records that make the writer commit at once. @default 500 */
  DB_FLUSH_MAX_RECORDS: integer(1, 100_000).default(500),
  /** Milliseconds between two PASSIVE WAL checkpoints; 0 turns them off. @default 30000 */
  DB_CHECKPOINT_INTERVAL_MS: integer(0, 86_400_000).default(30_000),
  /** Milliseconds SQLite waits for a lock held by another connection. @default 5000 */
  DB_BUSY_TIMEOUT_MS: integer(0, 600_000).default(5_000),
  /** Milliseconds a shutdown waits for running tasks before it interrupts them. @default 10000 */
  SHUTDOWN_GRACE_MS: integer(0, 600_000).default(10_000),
  /** Maximum entries in the memory tier of the cache. @default 10000 */
  CACHE_MAX_ENTRIES: integer(1, 10_000_000).default(10_000),
  /** Maximum bytes of cached text in the memory tier. @default 67108864 (64 MiB) */
  CACHE_MAX_BYTES: integer(1024, 1 << 40).default(64 * 1024 * 1024),
  /** Seconds a cached answer is served; a request may ask for less or more. @default 86400 */
  CACHE_TTL_SECONDS: integer(1, 31_536_000).default(86_400),
  /** `user` keeps each user's answers apart; `global` shares answers between users. @default user */
  CACHE_SCOPE: z.enum(['user', 'global']).default('user'),
  /**
   * `conservative` folds CRLF to LF, trims trailing whitespace and applies Unicode NFC;
   * `aggressive` also lowercases and collapses runs of whitespace. @default conservative
   */
  CACHE_NORMALIZE: z.enum(['conservative', 'aggressive']).default('conservative'),
  /** Caches answers of the demo provider too (for benchmarks). @default false */
  CACHE_DEMO_ANSWERS: booleanFlag(false),
  /** Milliseconds between two sweeps of expired cache entries. @default 60000 */
  CACHE_SWEEP_MS: integer(100, 86_400_000).default(60_000),
  /** Bearer token that grants admin operations such as `purgeCache`; unset disables them. */
  ADMIN_TOKEN: z.string().min(16, 'must have at least 16 characters').optional(),
  /** Milliseconds between two log lines with queue and cache figures; 0 turns them off. @default 30000 */
  METRICS_LOG_INTERVAL_MS: integer(0, 86_400_000).default(30_000),
  /**
   * `apikey` requires an API key on every request; `none` serves everyone as one local user.
   * @default apikey, or none when HOST is a loopback address
   */
  AUTH_MODE: z.enum(['none', 'apikey']).optional(),
  /** Tasks one user may have waiting in the queue. @default 20 */
  USER_MAX_QUEUED: integer(1, 1_000_000).default(20),
  /** Submissions one user may make per minute. @default 120 */
  USER_SUBMITS_PER_MINUTE: integer(1, 1_000_000).default(120),
  /** Deepest selection set an operation may have. @default 12 */
  MAX_QUERY_DEPTH: integer(1, 1000).default(12),
  /** Aliases an operation may use. @default 15 */
  MAX_QUERY_ALIASES: integer(0, 10_000).default(15),
  /** Tokens an operation's text may have. @default 2000 */
  MAX_QUERY_TOKENS: integer(10, 1_000_000).default(2000),
  /** Directives an operation may use. @default 20 */
  MAX_QUERY_DIRECTIVES: integer(0, 10_000).default(20),
  /** Bytes a request body or WebSocket message may have. @default 2097152 (2 MiB) */
  MAX_BODY_BYTES: integer(1024, 1 << 30).default(2 * 1024 * 1024),
  /** Operations one batched HTTP request may carry; 1 turns batching off. @default 10 */
  MAX_BATCH_OPERATIONS: integer(1, 1000).default(10),
  /** Serves GraphiQL at the GraphQL path. @default true */
  GRAPHIQL: booleanFlag(true),
  /** Answers introspection queries. @default true */
  INTROSPECTION: booleanFlag(true),
  /** Milliseconds a WebSocket may take to send connection_init. @default 5000 */
  WS_INIT_TIMEOUT_MS: integer(100, 600_000).default(5000),
  /** Subscriptions one WebSocket may run at once. @default 100 */
  WS_MAX_SUBSCRIPTIONS: integer(1, 100_000).default(100),
  /** Milliseconds between keepalive pings on idle WebSockets; 0 turns them off. @default 15000 */
  WS_KEEPALIVE_MS: integer(0, 600_000).default(15_000),
  /**
   * Comma-separated browser origins, besides the server's own, that may call the API, or `*` for
   * any. Requests from other origins are rejected with 403. @default none
   */
  CORS_ORIGINS: z
    .string()
    .default('')
    .transform((value) =>
      value
        .split(',')
        .map((origin) => origin.trim())
        .filter((origin) => origin !== ''),
    ),
  /** Pino log level. @default info */
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

/** Validated settings of one server. */
export type Config = Omit<z.infer<typeof configSchema>, 'AUTH_MODE'> & {
  AUTH_MODE: 'none' | 'apikey';
};

/** Returns whether `host` only accepts connections from this machine. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '').toLowerCase();
  return bare === 'localhost' || bare === '::1' || /^127(\.\d{1,3}){3}$/.test(bare);
}

/**
 * Fills in AUTH_MODE and checks rules that involve several settings: no non-loopback address
 * without authentication, and a default wait within the maximum.
 */
function withAuthMode(parsed: z.infer<typeof configSchema>): Config {
  const loopback = isLoopbackHost(parsed.HOST);
  const mode = parsed.AUTH_MODE ?? (loopback ? 'none' : 'apikey');
  if (mode === 'none' && !loopback) {
    throw new ConfigError(
      `Invalid configuration:\n  AUTH_MODE: none is only allowed on a loopback HOST, got HOST ${JSON.stringify(parsed.HOST)}. Use AUTH_MODE=apikey and create keys with npm run keys.`,
    );
  }
  if (parsed.GENERATE_WAIT_MS > parsed.GENERATE_MAX_WAIT_MS) {
    throw new ConfigError(
      `Invalid configuration:\n  GENERATE_WAIT_MS: must not exceed GENERATE_MAX_WAIT_MS (${parsed.GENERATE_MAX_WAIT_MS}), got ${parsed.GENERATE_WAIT_MS}.`,
    );
  }
  return { ...parsed, AUTH_MODE: mode };
}

/** Thrown when an environment variable is invalid; the message names each bad variable. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/**
 * Reads the settings from environment variables (empty strings count as unset) and validates them.
 * @throws ConfigError naming every invalid variable, what it expected and what it got.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const input: Record<string, string> = {};
  for (const key of Object.keys(configSchema.shape)) {
    const value = env[key];
    if (value !== undefined && value.trim() !== '') input[key] = value.trim();
  }
  return parseConfig(input);
}

/** Validates settings given as an object, filling in defaults; used by tests and `loadConfig`. */
export function parseConfig(input: Partial<Record<keyof Config, unknown>>): Config {
  const parsed = configSchema.safeParse(input);
  if (parsed.success) return withAuthMode(parsed.data);
  const problems = parsed.error.issues.map((issue) => {
    const key = issue.path.join('.');
    const value = JSON.stringify(input[key as keyof Config]);
    return `${key}: ${issue.message} (got ${value})`;
  });
  throw new ConfigError(`Invalid configuration:\n  ${problems.join('\n  ')}`);
}
