import type { DocumentNode, GraphQLError } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { LRUCache } from 'lru-cache';

/** Options for {@link useDocumentCache}. */
export interface DocumentCacheOptions {
  /** Parsed documents kept, by query text. @default 1000 */
  maxDocuments?: number;
}

/**
 * Caches parsed documents by query text and validation results by document. It replaces yoga's own
 * cache, which keys validation by the names of the rules and so reads every rule's name on every
 * operation. Here the schema and the rules are fixed for the life of the server (the rules that
 * plugins add are the same each time), so the document alone is the key. Only successful parses
 * are kept, so a stream of invalid queries cannot fill the cache.
 */
export function useDocumentCache(options: DocumentCacheOptions = {}): Plugin {
  const documents = new LRUCache<string, DocumentNode>({ max: options.maxDocuments ?? 1000 });
  const validations = new WeakMap<DocumentNode, readonly GraphQLError[]>();
  return {
    onParse: ({ params, setParsedDocument }) => {
      const text = typeof params.source === 'string' ? params.source : params.source.body;
      const cached = documents.get(text);
      if (cached !== undefined) {
        setParsedDocument(cached);
        return undefined;
      }
      return ({ result }) => {
        if (result !== null && typeof result === 'object' && 'kind' in result) {
          documents.set(text, result as DocumentNode);
        }
      };
    },
    onValidate: ({ params, setResult }) => {
      const cached = validations.get(params.documentAST);
      if (cached !== undefined) {
        setResult(cached);
        return undefined;
      }
      return ({ result }) => {
        validations.set(params.documentAST, result as readonly GraphQLError[]);
      };
    },
  };
}
