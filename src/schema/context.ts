import type { Logger } from '../logger';
import type { Metrics, Transport } from '../services/metrics/metrics';
import type { Caller, TaskService } from '../services/task-service';

/** What every resolver receives. */
export interface GraphQLContext {
  tasks: TaskService;
  metrics: Metrics;
  caller: Caller;
  logger: Logger;
  /** How the operation arrived; HTTP subscriptions are SSE. */
  transport: Transport;
}
