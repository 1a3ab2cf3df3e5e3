/* eslint-disable */
/** Internal type. DO NOT USE DIRECTLY. */
type Exact<T extends { [key: string]: unknown }> = { [K in keyof T]: T[K] };
/** Internal type. DO NOT USE DIRECTLY. */
export type Incremental<T> = T | { [P in keyof T]?: P extends ' $fragmentName' | '__typename' ? T[P] : never };
import type { DocumentTypeDecoration } from '@graphql-typed-document-node/core';
/** DEFAULT reads and writes the answer cache, BYPASS does neither, REFRESH only writes. */
export type CacheMode =
  | 'BYPASS'
  | 'DEFAULT'
  | 'REFRESH';

/** Sampling settings; absent fields use the model's defaults. */
export type GenerationParams = {
  /** At least 1; the server sets the maximum. */
  maxTokens?: number | null | undefined;
  seed?: number | null | undefined;
  /** Up to 4 sequences that end the generation. */
  stop?: Array<string> | null | undefined;
  /** From 0 to 2. */
  temperature?: number | null | undefined;
  /** Above 0, at most 1. */
  topP?: number | null | undefined;
};

export type SubmitTaskInput = {
  cache?: CacheMode | null | undefined;
  /** Seconds the answer stays cached, from 1 to one year; the server sets the default. */
  cacheTtlSeconds?: number | null | undefined;
  /** The same key from the same user returns the same task instead of a new one. */
  idempotencyKey?: string | null | undefined;
  /** Defaults to the server's configured model. */
  model?: string | null | undefined;
  params?: GenerationParams | null | undefined;
  /** From -100 to 100; higher runs first. */
  priority?: number | null | undefined;
  prompt: string;
  system?: string | null | undefined;
};

/** What happened to a task. RETRYING means the text streamed so far is discarded. */
export type TaskEventKind =
  | 'CANCELLED'
  | 'COMPLETED'
  | 'FAILED'
  | 'QUEUED'
  | 'RETRYING'
  | 'STARTED'
  | 'TOKEN';

/** Where a task is in its life. COMPLETED, FAILED and CANCELLED are terminal. */
export type TaskStatus =
  | 'CANCELLED'
  | 'COMPLETED'
  | 'FAILED'
  | 'QUEUED'
  | 'RUNNING';

export type SubmitTaskMutationVariables = Exact<{
  input: SubmitTaskInput;
}>;


export type SubmitTaskMutation = { submitTask: { id: string, status: TaskStatus, model: string } };

export type TaskEventsSubscriptionVariables = Exact<{
  id: string | number;
  afterSeq?: number | null | undefined;
}>;


export type TaskEventsSubscription = { taskEvents: { seq: number, kind: TaskEventKind, delta: string | null, queuePosition: number | null, task: { status: TaskStatus, result: string | null, cached: boolean, error: { code: string, message: string } | null, usage: { promptTokens: number | null, completionTokens: number | null } | null } } };

export class TypedDocumentString<TResult, TVariables>
  extends String
  implements DocumentTypeDecoration<TResult, TVariables>
{
  __apiType?: NonNullable<DocumentTypeDecoration<TResult, TVariables>['__apiType']>;
  private value: string;
  public __meta__?: Record<string, any> | undefined;

  constructor(value: string, __meta__?: Record<string, any> | undefined) {
    super(value);
    this.value = value;
    this.__meta__ = __meta__;
  }

  override toString(): string & DocumentTypeDecoration<TResult, TVariables> {
    return this.value;
  }
}

export const SubmitTaskDocument = new TypedDocumentString(`
    mutation SubmitTask($input: SubmitTaskInput!) {
  submitTask(input: $input) {
    id
    status
    model
  }
}
    `) as unknown as TypedDocumentString<SubmitTaskMutation, SubmitTaskMutationVariables>;
export const TaskEventsDocument = new TypedDocumentString(`
    subscription TaskEvents($id: ID!, $afterSeq: Int) {
  taskEvents(id: $id, afterSeq: $afterSeq) {
    seq
    kind
    delta
    queuePosition
    task {
      status
      result
      cached
      error {
        code
        message
      }
      usage {
        promptTokens
        completionTokens
      }
    }
  }
}
    `) as unknown as TypedDocumentString<TaskEventsSubscription, TaskEventsSubscriptionVariables>;