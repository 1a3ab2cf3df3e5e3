import { ErrorCode, TaskwireError } from '../errors';
import type { GenerationParams } from './task-types';

/** How a task uses the answer cache. */
export const CacheMode = { DEFAULT: 'DEFAULT', BYPASS: 'BYPASS', REFRESH: 'REFRESH' } as const;
export type CacheMode = (typeof CacheMode)[keyof typeof CacheMode];

/** Generation settings as a client sends them: any field may be absent or null. */
export type GenerationParamsInput = { [K in keyof GenerationParams]?: GenerationParams[K] | null };

/** A task as a client submits it, before validation. */
export interface SubmitTaskInput {
  prompt: string;
  system?: string | null;
  model?: string | null;
  params?: GenerationParamsInput | null;
  priority?: number | null;
  cache?: CacheMode | null;
  cacheTtlSeconds?: number | null;
  idempotencyKey?: string | null;
}

/** A validated submission with defaults filled in. */
export interface ValidSubmission {
  prompt: string;
  system: string | null;
  model: string | null;
  params: GenerationParams;
  priority: number;
  cache: CacheMode;
  /** Seconds the answer stays cached; null for the server's default. */
  cacheTtlSeconds: number | null;
  idempotencyKey: string | null;
}

/** Bounds that {@link validateSubmission} enforces. */
export interface SubmissionLimits {
  /** Maximum characters in `prompt` and in `system`. */
  promptMaxChars: number;
  /** Maximum `params.maxTokens`. */
  maxTokens: number;
}

/** Lowest and highest accepted `priority`. */
export const PRIORITY_RANGE = { min: -100, max: 100 } as const;
/** Maximum number of stop sequences, as in the OpenAI API. */
export const MAX_STOP_SEQUENCES = 4;
const MAX_STOP_CHARS = 256;
const MAX_MODEL_CHARS = 256;
const MAX_IDEMPOTENCY_KEY_CHARS = 256;
// Model names go into upstream requests and logs, so no control character at all, line breaks included.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const MODEL_FORBIDDEN = /[\u0000-\u001f\u007f]/;

/** Throws a BAD_USER_INPUT error that names the offending field. */
export function invalidInput(field: string, message: string): never {
  throw new TaskwireError(ErrorCode.BAD_USER_INPUT, `Invalid ${field}: ${message}`, {
    extensions: { field },
  });
}

/**
 * Checks a submission against the limits and returns it with defaults filled in.
 * @throws TaskwireError BAD_USER_INPUT naming the first invalid field.
 */
export function validateSubmission(
  input: SubmitTaskInput,
  limits: SubmissionLimits,
): ValidSubmission {
  return {
    prompt: validateText('prompt', input.prompt, limits.promptMaxChars, true) as string,
    system: validateText('system', input.system, limits.promptMaxChars, false),
    model: validateModel(input.model),
    params: validateParams(input.params ?? {}, limits),
    priority: validatePriority(input.priority),
    cache: input.cache ?? CacheMode.DEFAULT,
    cacheTtlSeconds: validateTtl(input.cacheTtlSeconds),
    idempotencyKey: validateIdempotencyKey(input.idempotencyKey),
  };
}

function validateText(
  field: string,
  value: string | null | undefined,
  maxChars: number,
  required: boolean,
): string | null {
  if (value === null || value === undefined) {
    return required ? invalidInput(field, 'it is required.') : null;
  }
  if (required && value.trim() === '') invalidInput(field, 'it must not be empty or blank.');
  if (value.length > maxChars) {
    invalidInput(field, `it has ${value.length} characters; the limit is ${maxChars}.`);
  }
  if (value.includes('\u0000')) invalidInput(field, 'it must not contain NUL characters.');
  return value;
}

function validateModel(model: string | null | undefined): string | null {
  if (model === null || model === undefined) return null;
  if (model.trim() === '' || model.length > MAX_MODEL_CHARS || MODEL_FORBIDDEN.test(model)) {
    invalidInput(
      'model',
      `expected 1 to ${MAX_MODEL_CHARS} printable characters, got ${JSON.stringify(model.slice(0, 40))}.`,
    );
  }
  return model;
}

function validateParams(params: GenerationParamsInput, limits: SubmissionLimits): GenerationParams {
  const result: GenerationParams = {};
  const { temperature, topP, maxTokens, stop, seed } = params;
  if (temperature !== undefined && temperature !== null) {
    if (!(temperature >= 0 && temperature <= 2)) {
      invalidInput('params.temperature', `expected a number from 0 to 2, got ${temperature}.`);
    }
    result.temperature = temperature;
  }
  if (topP !== undefined && topP !== null) {
    if (!(topP > 0 && topP <= 1)) {
      invalidInput('params.topP', `expected a number above 0 and at most 1, got ${topP}.`);
    }
    result.topP = topP;
  }
  if (maxTokens !== undefined && maxTokens !== null) {
    if (!Number.isInteger(maxTokens) || maxTokens < 1 || maxTokens > limits.maxTokens) {
      invalidInput(
        'params.maxTokens',
        `expected an integer from 1 to ${limits.maxTokens}, got ${maxTokens}.`,
      );
    }
    result.maxTokens = maxTokens;
  }
  if (stop !== undefined && stop !== null) result.stop = validateStop(stop);
  if (seed !== undefined && seed !== null) {
    if (!Number.isSafeInteger(seed))
      invalidInput('params.seed', `expected an integer, got ${seed}.`);
    result.seed = seed;
  }
  return result;
}

function validateStop(stop: string[]): string[] {
  if (stop.length > MAX_STOP_SEQUENCES) {
    invalidInput(
      'params.stop',
      `expected at most ${MAX_STOP_SEQUENCES} sequences, got ${stop.length}.`,
    );
  }
  for (const sequence of stop) {
    if (sequence.length === 0 || sequence.length > MAX_STOP_CHARS) {
      invalidInput(
        'params.stop',
        `each sequence must have 1 to ${MAX_STOP_CHARS} characters, got ${sequence.length}.`,
      );
    }
  }
  return [...stop];
}

function validatePriority(priority: number | null | undefined): number {
  if (priority === null || priority === undefined) return 0;
  const { min, max } = PRIORITY_RANGE;
  if (!Number.isInteger(priority) || priority < min || priority > max) {
    invalidInput('priority', `expected an integer from ${min} to ${max}, got ${priority}.`);
  }
  return priority;
}

/** Longest cache TTL a request may ask for: one year. */
export const MAX_CACHE_TTL_SECONDS = 31_536_000;

function validateTtl(seconds: number | null | undefined): number | null {
  if (seconds === null || seconds === undefined) return null;
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > MAX_CACHE_TTL_SECONDS) {
    invalidInput(
      'cacheTtlSeconds',
      `expected an integer from 1 to ${MAX_CACHE_TTL_SECONDS}, got ${seconds}.`,
    );
  }
  return seconds;
}

function validateIdempotencyKey(key: string | null | undefined): string | null {
  if (key === null || key === undefined) return null;
  if (key.length === 0 || key.length > MAX_IDEMPOTENCY_KEY_CHARS) {
    invalidInput(
      'idempotencyKey',
      `expected 1 to ${MAX_IDEMPOTENCY_KEY_CHARS} characters, got ${key.length}.`,
    );
  }
  return key;
}
