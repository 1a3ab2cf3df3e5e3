import {
  canonicalJson,
  computeCacheKey,
  normalizePrompt,
} from '../../src/services/cache/cache-key';
import type { CacheKeyParts } from '../../src/services/cache/cache-key';

const base: CacheKeyParts = {
  provider: 'openai',
  model: 'm',
  system: null,
  prompt: 'Hello',
  params: {},
  scope: 'alice',
};

function key(
  overrides: Partial<CacheKeyParts>,
  mode: 'conservative' | 'aggressive' = 'conservative',
) {
  return computeCacheKey({ ...base, ...overrides }, mode);
}

describe('computeCacheKey', () => {
  it('is a SHA-256 in hex', () => {
    expect(key({})).toMatch(/^[0-9a-f]{64}$/);
  });

  it.each<[string, Partial<CacheKeyParts>]>([
    ['provider', { provider: 'llama' }],
    ['model', { model: 'other' }],
    ['system prompt', { system: 'Be brief.' }],
    ['empty system prompt', { system: '' }],
    ['prompt', { prompt: 'Hello!' }],
    ['temperature', { params: { temperature: 0.5 } }],
    ['topP', { params: { topP: 0.9 } }],
    ['maxTokens', { params: { maxTokens: 10 } }],
    ['stop', { params: { stop: ['\n'] } }],
    ['seed', { params: { seed: 1 } }],
    ['temperature set to a usual default', { params: { temperature: 1 } }],
    ['user scope', { scope: 'bob' }],
    ['global scope', { scope: null }],
    ['letter case', { prompt: 'hello' }],
  ])('changes with the %s', (_name, change) => {
    expect(key(change)).not.toBe(key({}));
  });

  it.each<[string, Partial<CacheKeyParts>]>([
    ['CRLF line endings', { prompt: 'Hello\r\nworld' }],
    ['a lone CR', { prompt: 'Hello\rworld' }],
  ])('treats %s like LF', (_name, change) => {
    expect(key(change)).toBe(key({ prompt: 'Hello\nworld' }));
  });

  it('ignores trailing whitespace but not leading whitespace', () => {
    expect(key({ prompt: 'Hello  \n\t' })).toBe(key({}));
    expect(key({ prompt: '  Hello' })).not.toBe(key({}));
  });

  it('puts text in Unicode NFC', () => {
    expect(key({ prompt: 'Cafe\u0301' })).toBe(key({ prompt: 'Caf\u00e9' }));
  });

  it('hashes absent and null parameters alike', () => {
    const absent = key({ params: {} });
    const nulls = key({ params: { temperature: null, stop: null } as never });
    expect(nulls).toBe(absent);
  });

  it('does not depend on parameter order, stop order or duplicate stops', () => {
    const a = key({ params: { temperature: 0.2, seed: 3, stop: ['b', 'a'] } });
    const b = key({ params: { stop: ['a', 'b', 'a'], seed: 3, temperature: 0.2 } });
    expect(a).toBe(b);
  });

  it('gives -0 and 0 one form', () => {
    expect(key({ params: { temperature: -0 } })).toBe(key({ params: { temperature: 0 } }));
  });

  it('folds case and whitespace only in aggressive mode', () => {
    const aggressive = (prompt: string) => key({ prompt }, 'aggressive');
    expect(aggressive('  HELLO \n  there ')).toBe(aggressive('hello there'));
    expect(key({ prompt: 'HELLO there' })).not.toBe(key({ prompt: 'hello there' }));
  });
});

describe('normalizePrompt', () => {
  it('keeps inner whitespace in conservative mode', () => {
    expect(normalizePrompt('a  b\r\n c  ', 'conservative')).toBe('a  b\n c');
  });
});

describe('canonicalJson', () => {
  it('sorts keys at every level and drops undefined', () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { z: 1, y: undefined }], c: null } })).toBe(
      '{"a":{"c":null,"d":[2,{"z":1}]},"b":1}',
    );
  });
});
