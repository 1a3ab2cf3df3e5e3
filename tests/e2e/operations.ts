/** GraphQL documents shared by the end-to-end suites. */

export const TASK_FIELDS = `
  id status prompt system model result cached coalesced attempts priority queuePosition
  error { code message }
  usage { promptTokens completionTokens totalTokens }
  createdAt startedAt finishedAt
`;

export const SUBMIT = `mutation Submit($input: SubmitTaskInput!) {
  submitTask(input: $input) { ${TASK_FIELDS} }
}`;

export const GENERATE = `mutation Generate($input: SubmitTaskInput!, $waitMs: Int) {
  generate(input: $input, waitMs: $waitMs) { ${TASK_FIELDS} }
}`;

export const CANCEL = `mutation Cancel($id: ID!) { cancelTask(id: $id) { ${TASK_FIELDS} } }`;

export const TASK = `query Task($id: ID!) { task(id: $id) { ${TASK_FIELDS} } }`;

export const TASKS = `query Tasks($status: [TaskStatus!], $first: Int, $after: String) {
  tasks(status: $status, first: $first, after: $after) {
    edges { cursor node { id status prompt } }
    pageInfo { hasNextPage endCursor }
  }
}`;

export const EVENTS = `subscription Events($id: ID!, $afterSeq: Int) {
  taskEvents(id: $id, afterSeq: $afterSeq) {
    seq kind delta queuePosition at
    task { id status result attempts error { code message } usage { promptTokens completionTokens totalTokens } }
  }
}`;

export const QUEUE_METRICS = `{ metrics { queue { depth capacity running workers paused } } }`;

/** The shape of a task in responses. */
export interface TaskShape {
  id: string;
  status: string;
  prompt: string;
  result: string | null;
  cached: boolean;
  coalesced: boolean;
  attempts: number;
  priority: number;
  queuePosition: number | null;
  error: { code: string; message: string } | null;
  usage: {
    promptTokens: number | null;
    completionTokens: number | null;
    totalTokens: number | null;
  } | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

/** The shape of a task event in responses. */
export interface EventShape {
  seq: number;
  kind: string;
  delta: string | null;
  queuePosition: number | null;
  task: Pick<TaskShape, 'id' | 'status' | 'result' | 'attempts' | 'error' | 'usage'>;
}
