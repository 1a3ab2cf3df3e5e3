/**
 * Writes the built-in test model, a tiny llama-architecture GGUF file that llama.cpp can run.
 *
 *   npm run model:tiny                 # writes data/models/taskwire-tiny.gguf
 *   npm run model:tiny -- OUTPUT.gguf  # writes OUTPUT.gguf
 *
 * The server writes the same file by itself at start when no model is configured. This script is
 * for trying the model with other tools, such as llama.cpp's `llama-cli`.
 */
import { resolve } from 'node:path';
import { TINY_MODEL_PATH } from '../src/services/llm/create-llama-provider';
import { TINY_MODEL_REPLY, writeTinyModel } from '../src/services/llm/tiny-model';

const output = resolve(process.argv[2] ?? TINY_MODEL_PATH);
const written = writeTinyModel(output);
console.log(`${written ? 'Wrote' : 'Up to date:'} ${output}`);
console.log(`Its greedy reply to any chat prompt: ${JSON.stringify(TINY_MODEL_REPLY)}`);
