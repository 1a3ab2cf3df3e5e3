import type { CodegenConfig } from '@graphql-codegen/cli';
import { printSchema } from 'graphql';
import { createSchema } from './src/schema/schema';

/**
 * Writes `schema.graphql` from the Pothos schema and typed documents for the example client.
 * `npm run codegen` runs it; `npm run schema:check` fails when `schema.graphql` is stale.
 */
const config: CodegenConfig = {
  schema: printSchema(createSchema()),
  documents: ['examples/**/*.ts', '!examples/generated/**'],
  ignoreNoDocuments: false,
  generates: {
    'schema.graphql': { plugins: ['schema-ast'] },
    'examples/generated/': {
      preset: 'client',
      config: { documentMode: 'string', useTypeImports: true, enumsAsTypes: true },
      presetConfig: { fragmentMasking: false },
    },
  },
};

export default config;
