import type { GenerateChunk, GenerateRequest } from '../../src/services/llm/provider';

/** Builds a generation request with `defaults`, then `overrides`, and a fresh abort signal. */
export function createRequest(
  defaults: Pick<GenerateRequest, 'model' | 'prompt'>,
  overrides: Partial<GenerateRequest> = {},
): GenerateRequest {
  return {
    system: null,
    params: {},
    signal: new AbortController().signal,
    ...defaults,
    ...overrides,
  };
}

/** Reads a provider's stream to its end. */
export async function collect(stream: AsyncIterable<GenerateChunk>): Promise<GenerateChunk[]> {
  const chunks: GenerateChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}
