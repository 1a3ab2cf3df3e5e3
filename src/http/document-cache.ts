import type { DocumentNode, GraphQLError } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { LRUCache } from 'lru-cache';

/** Options for {@link DocumentCache}. */
export interface DocumentCacheOptions {
  /** Parsed documents kept, by query text. @default 1000 */
  maxDocuments?: number;
}

/**
 * Parsed documents by query text and validation results by document. It replaces yoga's own
 * cache, which keys validation by the names of the rules and so reads every rule's name on every
 * operation. Here the schema and the rules are fixed for the life of the server (the rules that
 * plugins add are the same each time), so the document alone is the key. Only successful parses
 * are kept, so a stream of invalid queries cannot fill the cache.
 */
export class DocumentCache {
  private readonly documents: LRUCache<string, DocumentNode>;
  private readonly validations = new WeakMap<DocumentNode, readonly GraphQLError[]>();

  constructor(options: DocumentCacheOptions = {}) {
    this.documents = new LRUCache({ max: options.maxDocuments ?? 1000 });
  }

  /** Returns the document parsed earlier from `text`, if it is still cached. */
  document(text: string): DocumentNode | undefined {
    return this.documents.get(text);
  }

  /** Returns the errors that validating `document` gave earlier, if it was validated. */
  validation(document: DocumentNode): readonly GraphQLError[] | undefined {
    return this.validations.get(document);
  }

  /** Creates the envelop plugin that fills the cache and serves parses and validations from it. */
  plugin(): Plugin {
    return {
      onParse: ({ params, setParsedDocument }) => {
        const text = typeof params.source === 'string' ? params.source : params.source.body;
        const cached = this.documents.get(text);
        if (cached !== undefined) {
          setParsedDocument(cached);
          return undefined;
        }
        return ({ result }) => {
          if (result !== null && typeof result === 'object' && 'kind' in result) {
            this.documents.set(text, result as DocumentNode);
          }
        };
      },
      onValidate: ({ params, setResult }) => {
        const cached = this.validations.get(params.documentAST);
        if (cached !== undefined) {
          setResult(cached);
          return undefined;
        }
        return ({ result }) => {
          this.validations.set(params.documentAST, result as readonly GraphQLError[]);
        };
      },
    };
  }
}
