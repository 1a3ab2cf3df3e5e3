import { ConfigError } from '../../config';
import type { Config } from '../../config';
import type { Logger } from '../../logger';
import { DemoProvider } from './demo-provider';
import { OpenAiProvider } from './openai-provider';
import type { LlmProvider } from './provider';

/** Model asked of an OpenAI-compatible server when `LLM_MODEL` is not set. */
const DEFAULT_OPENAI_MODEL = 'gpt-4o-mini';

/**
 * Creates the provider `LLM_PROVIDER` names. `auto` picks `openai` when `LLM_BASE_URL` is set and the
 * demo stand-in otherwise, with a warning that says how to use a real model.
 * @throws ConfigError when the chosen provider cannot run with these settings.
 */
export function createProvider(config: Config, logger: Logger): LlmProvider {
  const log = logger.child({ area: 'llm' });
  switch (config.LLM_PROVIDER) {
    case 'openai':
      return createOpenAiProvider(config, log);
    case 'demo':
      return createDemoProvider(log);
    case 'llama':
      throw new ConfigError(
        'LLM_PROVIDER=llama: the embedded llama.cpp engine is not available in this build. Set LLM_BASE_URL to an OpenAI-compatible server (for example llama.cpp `llama-server` or Ollama at http://127.0.0.1:11434/v1), or set LLM_PROVIDER=demo.',
      );
    case 'auto':
      if (config.LLM_BASE_URL !== undefined) return createOpenAiProvider(config, log);
      log.warn(
        {
          hint: 'Set LLM_BASE_URL to an OpenAI-compatible server, such as Ollama at http://127.0.0.1:11434/v1 or a llama.cpp server at http://127.0.0.1:8080/v1, and LLM_MODEL to its model name.',
          ignoredLlmModelPath: config.LLM_MODEL_PATH,
        },
        'No LLM_BASE_URL is set, so the demo provider answers: a stand-in that does not run a language model',
      );
      return createDemoProvider(log);
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

function createDemoProvider(log: Logger): DemoProvider {
  const provider = new DemoProvider();
  log.info({ provider: provider.name, model: provider.defaultModel }, 'Using the demo provider');
  return provider;
}
