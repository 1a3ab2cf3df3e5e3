import type { Logger } from '../logger';
import type { Metrics, Transport } from '../services/metrics/metrics';
import type { Caller, TaskService } from '../services/task-service';

/** What every resolver receives. */
export interface GraphQLContext {
  tasks: TaskService;
  metrics: Metrics;
  caller: Caller;
  /** The HTTP area's logger; log lines about this operation carry `requestId`. */
  logger: Logger;
  /** The client's `X-Request-Id` when it sent a usable one, else a random UUID. */
  requestId: string;
  /** How the operation arrived; HTTP subscriptions are SSE. */
  transport: Transport;
}
