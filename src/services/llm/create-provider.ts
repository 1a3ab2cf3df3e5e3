import { ConfigError } from '../../config';
import type { Config } from '../../config';
import type { Logger } from '../../logger';
import { createLlamaProvider } from './create-llama-provider';
import { DemoProvider } from './demo-provider';
import { OpenAiProvider } from './openai-provider';
import type { LlmProvider } from './provider';

/** Model asked of an OpenAI-compatible server when `LLM_MODEL` is not set. */
const DEFAULT_OPENAI_MODEL = 'gpt-4o-mini';

/**
 * Creates the provider `LLM_PROVIDER` names. `auto` picks `openai` when `LLM_BASE_URL` is set, and
 * otherwise the embedded llama.cpp engine with `LLM_MODEL_PATH`, or with the built-in test model
 * (with a warning that explains how to use a real model) when that is not set either.
 * @throws ConfigError when the chosen provider cannot run with these settings.
 */
export function createProvider(config: Config, logger: Logger): LlmProvider {
  const log = logger.child({ area: 'llm' });
  switch (config.LLM_PROVIDER) {
    case 'openai':
      return createOpenAiProvider(config, log);
    case 'demo':
      return createDemoProvider(config, log);
    case 'llama':
      return createLlamaProvider(config, log);
    case 'auto':
      if (config.LLM_BASE_URL === undefined) return createLlamaProvider(config, log);
      if (config.LLM_MODEL_PATH !== undefined) {
        log.warn(
          { ignoredLlmModelPath: config.LLM_MODEL_PATH },
          'LLM_BASE_URL and LLM_MODEL_PATH are both set; LLM_PROVIDER=auto uses LLM_BASE_URL. Set LLM_PROVIDER=llama to run the model file instead.',
        );
      }
      return createOpenAiProvider(config, log);
  }
}

function createOpenAiProvider(config: Config, log: Logger): OpenAiProvider {
  if (config.LLM_BASE_URL === undefined) {
    throw new ConfigError(
      'LLM_PROVIDER=openai needs LLM_BASE_URL, the base URL of an OpenAI-compatible API (for example https://api.openai.com/v1 or http://127.0.0.1:11434/v1 for Ollama), but it is not set',
    );
  }
  let model = config.LLM_MODEL;
  if (model === undefined) {
    model = DEFAULT_OPENAI_MODEL;
    log.warn(`LLM_MODEL is not set; tasks that name no model ask the upstream for "${model}"`);
  }
  const provider = new OpenAiProvider({
    baseUrl: config.LLM_BASE_URL,
    apiKey: config.LLM_API_KEY,
    model,
    requestTimeoutMs: config.LLM_REQUEST_TIMEOUT_MS,
    logger: log,
  });
  log.info(
    {
      provider: provider.name,
      endpoint: provider.endpoint,
      model,
      // Says whether a key is sent, never the key.
      bearerToken: config.LLM_API_KEY !== undefined,
    },
    'Using an OpenAI-compatible model server',
  );
  return provider;
}

function createDemoProvider(config: Config, log: Logger): DemoProvider {
  const provider = new DemoProvider({ tokenDelayMs: config.DEMO_TOKEN_DELAY_MS });
  log.info(
    {
      provider: provider.name,
      model: provider.defaultModel,
      tokenDelayMs: config.DEMO_TOKEN_DELAY_MS,
    },
    'Using the demo provider',
  );
  return provider;
}
