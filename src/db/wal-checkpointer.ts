import type { Logger } from '../logger';

/** Modes of `PRAGMA wal_checkpoint` that the checkpointer runs, as SQLite names them. */
export const CheckpointMode = {
  /** Copies the frames it can without waiting for readers or writers to finish. */
  PASSIVE: 'PASSIVE',
  /** Copies every frame, waits for readers, then truncates the `-wal` file to 0 bytes. */
  TRUNCATE: 'TRUNCATE',
} as const;
export type CheckpointMode = (typeof CheckpointMode)[keyof typeof CheckpointMode];

/** The row that `PRAGMA wal_checkpoint` returns. */
export interface CheckpointResult {
  /** 1 when another connection's lock kept the checkpoint from finishing, else 0. */
  busy: number;
  /** Frames in the WAL, or -1 when the database is not in WAL mode. */
  log: number;
  /** Frames copied into the database file, or -1 when the database is not in WAL mode. */
  checkpointed: number;
}

/** Options for {@link WalCheckpointer}. */
export interface WalCheckpointerOptions {
  /** Runs one SQL statement on the database's connection and returns its rows. */
  execute: (sql: string) => Promise<Record<string, unknown>[]>;
  /** Milliseconds between two PASSIVE checkpoints; 0 turns them off. @default 30000 */
  intervalMs?: number;
  /** Logger for checkpoint results and failures. */
  logger: Logger;
}

/** Counters for metrics and tests. */
export interface WalCheckpointerStats {
  /** Checkpoints that ran to the end, in any mode. */
  checkpoints: number;
  /** Checkpoints that failed with an error. */
  failures: number;
  /** Result of the most recent successful checkpoint, or null before the first. */
  last: CheckpointResult | null;
}

const DEFAULT_INTERVAL_MS = 30_000;

/**
 * Keeps the `-wal` file of a SQLite database small. SQLite's automatic checkpoint runs only when a
 * commit crosses 1,000 pages (`wal_autocheckpoint`), so after a burst the WAL keeps its frames
 * until the next write. A PASSIVE checkpoint every `intervalMs` copies them into the database file
 * without waiting for anyone. `close()` runs a TRUNCATE checkpoint, so that a clean shutdown leaves
 * an empty `-wal` file. Checkpoints never overlap, because each waits for the previous one.
 */
export class WalCheckpointer {
  private readonly execute: WalCheckpointerOptions['execute'];
  private readonly intervalMs: number;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> = Promise.resolve();
  private closing: Promise<void> | undefined;
  private readonly counters: WalCheckpointerStats = { checkpoints: 0, failures: 0, last: null };

  constructor(options: WalCheckpointerOptions) {
    const intervalMs = options.intervalMs ?? DEFAULT_INTERVAL_MS;
    if (!Number.isInteger(intervalMs) || intervalMs < 0) {
      throw new RangeError(`Expected intervalMs to be an integer >= 0, got ${intervalMs}.`);
    }
    this.execute = options.execute;
    this.intervalMs = intervalMs;
    this.log = options.logger;
  }

  /** Snapshot of the counters. */
  get stats(): WalCheckpointerStats {
    return { ...this.counters };
  }

  /** Starts the periodic PASSIVE checkpoints, unless the interval is 0 or it already runs. */
  start(): void {
    if (this.intervalMs === 0 || this.timer !== undefined || this.closing !== undefined) return;
    this.timer = setInterval(() => void this.runPeriodic(), this.intervalMs);
    this.timer.unref();
  }

  /**
   * Runs one checkpoint after any that is still running.
   * @throws the database error when the statement fails.
   */
  checkpoint(mode: CheckpointMode): Promise<CheckpointResult> {
    const next = this.running.then(() => this.runCheckpoint(mode));
    this.running = next.catch(() => undefined);
    return next;
  }

  /**
   * Stops the periodic checkpoints and truncates the WAL. Idempotent. A TRUNCATE that another
   * process's reader keeps busy is logged, not thrown: the data is safe, only the file stays.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    const result = await this.checkpoint(CheckpointMode.TRUNCATE);
    if (result.busy !== 0) {
      this.log.warn(
        { ...result },
        'WAL truncation at close was blocked by another connection; the -wal file remains',
      );
    }
  }

  private async runPeriodic(): Promise<void> {
    try {
      const result = await this.checkpoint(CheckpointMode.PASSIVE);
      this.log.debug({ mode: CheckpointMode.PASSIVE, ...result }, 'WAL checkpoint');
    } catch (error) {
      this.log.warn({ err: error, mode: CheckpointMode.PASSIVE }, 'WAL checkpoint failed');
    }
  }

  private async runCheckpoint(mode: CheckpointMode): Promise<CheckpointResult> {
    try {
      const [row] = await this.execute(`PRAGMA wal_checkpoint(${mode})`);
      const result = {
        busy: Number(row?.busy ?? 0),
        log: Number(row?.log ?? -1),
        checkpointed: Number(row?.checkpointed ?? -1),
      };
      this.counters.checkpoints += 1;
      this.counters.last = result;
      return result;
    } catch (error) {
      this.counters.failures += 1;
      throw error;
    }
  }
}
