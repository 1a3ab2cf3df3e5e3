import type { Logger } from '../logger';
import type { Caller, TaskService } from '../services/task-service';

/** What every resolver receives. */
export interface GraphQLContext {
  tasks: TaskService;
  caller: Caller;
  logger: Logger;
}
