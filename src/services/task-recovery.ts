import type { Logger } from '../logger';
import type { TaskStore } from '../db/task-store';
import { ErrorCode } from '../errors';
import type { TaskRecord } from './task-types';
import { TaskStatus } from './task-types';

/**
 * Repairs the state a crash left behind and returns the tasks to run, oldest first. A task left
 * RUNNING goes back to QUEUED, unless it has used all its attempts: then it FAILS with INTERRUPTED,
 * so that a prompt that crashes the server cannot crash it forever.
 */
export async function recoverTasks(
  store: TaskStore,
  maxAttempts: number,
  logger: Logger,
): Promise<TaskRecord[]> {
  const interrupted = await store.findByStatuses([TaskStatus.RUNNING]);
  const requeued: string[] = [];
  const failed: string[] = [];
  for (const task of interrupted) {
    if (task.attempts >= maxAttempts) {
      failed.push(task.id);
      void store.update(task.id, {
        status: TaskStatus.FAILED,
        error: {
          code: ErrorCode.INTERRUPTED,
          message: `The server stopped while the task was running, after ${task.attempts} of ${maxAttempts} attempts.`,
        },
        finishedAt: new Date(),
      });
    } else {
      requeued.push(task.id);
      void store.update(task.id, { status: TaskStatus.QUEUED });
    }
  }
  await store.flush();
  if (interrupted.length > 0) {
    logger.warn({ requeued, failed }, 'Recovered tasks interrupted by the last stop');
  }
  return store.findByStatuses([TaskStatus.QUEUED]);
}
