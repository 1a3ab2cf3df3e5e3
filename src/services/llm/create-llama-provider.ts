import { join } from 'node:path';
import { ConfigError } from '../../config';
import type { Config } from '../../config';
import type { Logger } from '../../logger';
import { GgufError } from './gguf/gguf-reader';
import { LlamaProvider, chooseLlamaThreads } from './llama-provider';
import { TINY_MODEL_FILE_NAME, writeTinyModel } from './tiny-model';

/** Path of the built-in test model, relative to the working directory. */
export const TINY_MODEL_PATH = join('data', 'models', TINY_MODEL_FILE_NAME);

const REAL_MODEL_HINT =
  'Set LLM_MODEL_PATH to a GGUF model file (for example a Qwen2.5 or Llama 3.2 instruct model), or LLM_BASE_URL to an OpenAI-compatible server such as Ollama at http://127.0.0.1:11434/v1 or llama.cpp `llama-server` at http://127.0.0.1:8080/v1.';

/**
 * Creates the embedded llama.cpp provider for `LLM_MODEL_PATH`, or for the built-in test model when
 * it is not set (written to `data/models/` first when missing or outdated).
 * @throws ConfigError when the model file is missing or is not a valid GGUF language model.
 */
export function createLlamaProvider(config: Config, log: Logger): LlamaProvider {
  const builtIn = config.LLM_MODEL_PATH === undefined;
  const modelPath = config.LLM_MODEL_PATH ?? prepareTinyModel(log);
  const threads = config.LLM_THREADS ?? chooseLlamaThreads();
  let provider: LlamaProvider;
  try {
    provider = new LlamaProvider({
      modelPath,
      modelName: config.LLM_MODEL,
      contextSize: config.LLM_CONTEXT_SIZE,
      sequences: config.WORKERS,
      threads,
      loadTimeoutMs: config.LLM_LOAD_TIMEOUT_MS,
      logger: log,
    });
  } catch (error) {
    if (!(error instanceof GgufError)) throw error;
    throw new ConfigError(
      `LLM_MODEL_PATH=${modelPath} cannot be used: ${error.reason}. Point LLM_MODEL_PATH at a GGUF model file, or unset it to use the built-in test model.`,
    );
  }
  logStart(log, provider, { builtIn, threads, sequences: config.WORKERS });
  return provider;
}

function prepareTinyModel(log: Logger): string {
  let written: boolean;
  try {
    written = writeTinyModel(TINY_MODEL_PATH);
  } catch (error) {
    throw new ConfigError(
      `Writing the built-in test model to ${TINY_MODEL_PATH} failed (${(error as Error).message}). Start the server in a writable directory, or set LLM_MODEL_PATH or LLM_BASE_URL.`,
    );
  }
  if (written) log.info({ modelPath: TINY_MODEL_PATH }, 'Wrote the built-in test model');
  return TINY_MODEL_PATH;
}

function logStart(
  log: Logger,
  provider: LlamaProvider,
  settings: { builtIn: boolean; threads: number; sequences: number },
): void {
  const { model } = provider;
  log.info(
    {
      provider: provider.name,
      model: provider.defaultModel,
      modelPath: model.path,
      architecture: model.architecture,
      fileBytes: model.fileSize,
      threads: settings.threads,
      sequences: settings.sequences,
    },
    'Using the embedded llama.cpp engine; the model loads in a worker process',
  );
  if (settings.builtIn) {
    log.warn(
      { hint: REAL_MODEL_HINT, modelPath: model.path },
      'No model is configured, so the built-in test model answers: a tiny GGUF file that runs in llama.cpp but only spells out the alphabet, not a language model',
    );
  }
}
