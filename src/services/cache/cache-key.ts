import { createHash } from 'node:crypto';
import type { GenerationParams } from '../task-types';

/** How much a prompt is rewritten before it is hashed. */
export type PromptNormalization = 'conservative' | 'aggressive';

/** Everything that changes a model's answer, and so goes into the cache key. */
export interface CacheKeyParts {
  provider: string;
  model: string;
  system: string | null;
  prompt: string;
  params: GenerationParams;
  /** The user the answer belongs to, or null when answers are shared. */
  scope: string | null;
}

/** Version of the canonical form; raising it makes every old entry a miss. */
const KEY_VERSION = 1;

/**
 * Rewrites text in ways that cannot change its meaning to a model: CRLF and lone CR become LF,
 * trailing whitespace at the end is removed and the text is put in Unicode NFC. `aggressive` also
 * lowercases, trims the start and collapses every run of whitespace to one space, which can
 * change an answer (code, poetry, case-sensitive questions), so it is opt-in.
 */
export function normalizePrompt(text: string, mode: PromptNormalization): string {
  const conservative = text.replace(/\r\n?/g, '\n').trimEnd().normalize('NFC');
  if (mode === 'conservative') return conservative;
  return conservative.toLowerCase().replace(/\s+/g, ' ').trim();
}

/**
 * Builds the canonical parameter object: unset parameters (absent or null) are left out, so
 * both hash alike; a parameter set to any value, even a provider's usual default, is kept,
 * because providers' defaults differ. Stop sequences are a set, so they are sorted and deduplicated.
 */
function canonicalParams(params: GenerationParams): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  if (params.temperature != null) result.temperature = canonicalNumber(params.temperature);
  if (params.topP != null) result.topP = canonicalNumber(params.topP);
  if (params.maxTokens != null) result.maxTokens = params.maxTokens;
  if (params.seed != null) result.seed = params.seed;
  if (params.stop != null) result.stop = [...new Set(params.stop)].sort();
  return result;
}

/** Folds -0 into 0; JSON.stringify already gives every other finite number one shortest form. */
function canonicalNumber(value: number): number {
  return value === 0 ? 0 : value;
}

/** Serializes with object keys sorted at every level, so equal values give equal text. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, item]) => item !== undefined)
      .sort(([a], [b]) => compareKeys(a, b));
    return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** Orders object keys by UTF-16 code units, the same in every locale. */
function compareKeys(a: string, b: string): number {
  if (a === b) return 0;
  return a < b ? -1 : 1;
}

/** Returns the SHA-256 (hex) of the canonical form of everything that changes the answer. */
export function computeCacheKey(parts: CacheKeyParts, mode: PromptNormalization): string {
  const canonical = canonicalJson({
    v: KEY_VERSION,
    normalization: mode,
    provider: parts.provider,
    model: parts.model,
    system: parts.system === null ? null : normalizePrompt(parts.system, mode),
    prompt: normalizePrompt(parts.prompt, mode),
    params: canonicalParams(parts.params),
    scope: parts.scope,
  });
  return createHash('sha256').update(canonical).digest('hex');
}
