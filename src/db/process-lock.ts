import { readFile, unlink, writeFile } from 'node:fs/promises';
import { ConfigError } from '../config';

/**
 * A lock file next to the SQLite database, holding the pid of the server that uses it. Two servers
 * on one database would both recover the other's running tasks at start and run them twice, so
 * the second one must not start. A lock left by a process that no longer runs (after a crash) is
 * taken over.
 */
export class ProcessLock {
  private released = false;

  private constructor(readonly path: string) {}

  /**
   * Takes the lock at `path`.
   * @throws ConfigError when a running process holds it.
   */
  static async acquire(path: string): Promise<ProcessLock> {
    for (let attempt = 0; attempt < 2; attempt += 1) {
      try {
        await writeFile(path, `${process.pid}\n`, { flag: 'wx' });
        return new ProcessLock(path);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const holder = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
      if (Number.isInteger(holder) && isRunning(holder)) {
        throw new ConfigError(
          `The database is in use by process ${holder} (lock file ${path}). Only one Taskwire process may use a SQLite database; stop the other one, or delete the lock file if that process is not a Taskwire server.`,
        );
      }
      await unlink(path).catch(() => undefined);
    }
    throw new ConfigError(
      `Could not take the lock file ${path}; another process keeps creating it.`,
    );
  }

  /** Deletes the lock file. Idempotent. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await unlink(this.path).catch(() => undefined);
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
