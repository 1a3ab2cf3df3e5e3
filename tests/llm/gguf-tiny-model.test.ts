import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  TINY_MODEL_REPLY,
  createTinyModel,
  predictTinyModelReply,
  tokenizeForTinyModel,
  writeTinyModel,
} from '../../src/services/llm/tiny-model';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'taskwire-tiny-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('built-in tiny model', () => {
  it('is deterministic and small', () => {
    const first = createTinyModel();
    const second = createTinyModel();

    expect(first.equals(second)).toBe(true);
    expect(first.length).toBeGreaterThan(100_000);
    expect(first.length).toBeLessThan(1_000_000);
  });

  it('is generated quickly', () => {
    const started = performance.now();
    createTinyModel();
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it('uses each reply token once', () => {
    const chain = [...tokenizeForTinyModel('\n'), ...tokenizeForTinyModel(TINY_MODEL_REPLY)];
    expect(new Set(chain).size).toBe(chain.length);
  });

  it('tokenizes other characters as bytes', () => {
    const ascii = tokenizeForTinyModel('a b');
    expect(ascii).toHaveLength(3);
    expect(tokenizeForTinyModel('é')).toHaveLength(1);
    expect(tokenizeForTinyModel('✓')).toHaveLength(3);
    expect(tokenizeForTinyModel('🦙')).toHaveLength(4);
  });

  it('predicts the reply cut by maxTokens', () => {
    const full = tokenizeForTinyModel(TINY_MODEL_REPLY).length;

    expect(predictTinyModelReply()).toEqual({
      text: TINY_MODEL_REPLY,
      completionTokens: full,
      finishReason: 'stop',
    });
    expect(predictTinyModelReply(3)).toEqual({
      text: 'abc',
      completionTokens: 3,
      finishReason: 'length',
    });
    // The last character, ✓, is three byte tokens; two of them make no character.
    expect(predictTinyModelReply(full - 1).text).toBe(TINY_MODEL_REPLY.slice(0, -1));
  });

  it('writes a missing file, keeps an identical one', async () => {
    const path = join(dir, 'models', 'tiny.gguf');

    expect(writeTinyModel(path)).toBe(true);
    const { mtimeMs } = await stat(path);
    expect(writeTinyModel(path)).toBe(false);

    expect((await readFile(path)).equals(createTinyModel())).toBe(true);
    expect((await stat(path)).mtimeMs).toBe(mtimeMs);
  });

  it('replaces an outdated file', async () => {
    const path = join(dir, 'tiny.gguf');
    await writeFile(path, 'an older model');

    expect(writeTinyModel(path)).toBe(true);
    expect((await readFile(path)).equals(createTinyModel())).toBe(true);
  });
});
