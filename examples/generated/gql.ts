/* eslint-disable */
import * as types from './graphql';



/**
 * Map of all GraphQL operations in the project.
 *
 * This map has several performance disadvantages:
 * 1. It is not tree-shakeable, so it will include all operations in the project.
 * 2. It is not minifiable, so the string of a GraphQL query will be multiple times inside the bundle.
 * 3. It does not support dead code elimination, so it will add unused operations.
 *
 * Therefore it is highly recommended to use the babel or swc plugin for production.
 * Learn more about it here: https://the-guild.dev/graphql/codegen/plugins/presets/preset-client#reducing-bundle-size
 */
type Documents = {
    "\n  mutation SubmitTask($input: SubmitTaskInput!) {\n    submitTask(input: $input) {\n      id\n      status\n      model\n    }\n  }\n": typeof types.SubmitTaskDocument,
    "\n  subscription TaskEvents($id: ID!, $afterSeq: Int) {\n    taskEvents(id: $id, afterSeq: $afterSeq) {\n      seq\n      kind\n      delta\n      queuePosition\n      task {\n        status\n        result\n        cached\n        error {\n          code\n          message\n        }\n        usage {\n          promptTokens\n          completionTokens\n        }\n      }\n    }\n  }\n": typeof types.TaskEventsDocument,
};
const documents: Documents = {
    "\n  mutation SubmitTask($input: SubmitTaskInput!) {\n    submitTask(input: $input) {\n      id\n      status\n      model\n    }\n  }\n": types.SubmitTaskDocument,
    "\n  subscription TaskEvents($id: ID!, $afterSeq: Int) {\n    taskEvents(id: $id, afterSeq: $afterSeq) {\n      seq\n      kind\n      delta\n      queuePosition\n      task {\n        status\n        result\n        cached\n        error {\n          code\n          message\n        }\n        usage {\n          promptTokens\n          completionTokens\n        }\n      }\n    }\n  }\n": types.TaskEventsDocument,
};

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation SubmitTask($input: SubmitTaskInput!) {\n    submitTask(input: $input) {\n      id\n      status\n      model\n    }\n  }\n"): typeof import('./graphql').SubmitTaskDocument;
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  subscription TaskEvents($id: ID!, $afterSeq: Int) {\n    taskEvents(id: $id, afterSeq: $afterSeq) {\n      seq\n      kind\n      delta\n      queuePosition\n      task {\n        status\n        result\n        cached\n        error {\n          code\n          message\n        }\n        usage {\n          promptTokens\n          completionTokens\n        }\n      }\n    }\n  }\n"): typeof import('./graphql').TaskEventsDocument;


export function graphql(source: string) {
  return (documents as any)[source] ?? {};
}
