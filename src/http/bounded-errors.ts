import type { ExecutionResult } from 'graphql';
import type { Plugin } from 'graphql-yoga';

/** Characters of an error message, or of a text in its extensions, that a reply carries at most. */
export const MAX_ERROR_TEXT = 500;

/** `text` cut to `max` characters, with an ellipsis and the number of characters left out. */
export function clipText(text: string, max = MAX_ERROR_TEXT): string {
  if (text.length <= max) return text;
  return `${text.slice(0, max)}… (${text.length - max} more characters)`;
}

/**
 * Bounds the text of errors in HTTP replies. Some errors quote the request: yoga puts the JSON
 * parser's message, which repeats the body, into `extensions.originalError.message`. A 2 MB
 * malformed body would otherwise come back as a 2 MB reply.
 */
export function useBoundedErrors(): Plugin {
  return {
    onResultProcess: ({ result, setResult }) => {
      if (Array.isArray(result)) {
        if (result.some(hasLongText)) setResult(result.map(boundResult));
        return;
      }
      if (hasLongText(result)) setResult(boundResult(result as ExecutionResult));
    },
  };
}

function hasLongText(result: unknown): boolean {
  const errors = (result as ExecutionResult | undefined)?.errors;
  if (!Array.isArray(errors)) return false;
  return errors.some((error) => JSON.stringify(error).length > 2 * MAX_ERROR_TEXT);
}

function boundResult(result: ExecutionResult): ExecutionResult {
  if (!result.errors) return result;
  return {
    ...result,
    errors: result.errors.map((error) => {
      const json = typeof error.toJSON === 'function' ? error.toJSON() : error;
      return {
        ...json,
        message: clipText(json.message),
        extensions: json.extensions ? boundValue(json.extensions, 0) : undefined,
      };
    }) as unknown as ExecutionResult['errors'],
  };
}

/** Clips every string in a JSON-like value, three levels deep; deeper values are dropped. */
function boundValue<T>(value: T, depth: number): T {
  if (typeof value === 'string') return clipText(value) as T;
  if (value === null || typeof value !== 'object') return value;
  if (depth >= 3) return undefined as T;
  if (Array.isArray(value)) {
    return value.slice(0, 20).map((item: unknown) => boundValue(item, depth + 1)) as T;
  }
  const bounded: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) bounded[key] = boundValue(item, depth + 1);
  return bounded as T;
}
