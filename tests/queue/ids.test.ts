import { UUID_PATTERN, createTaskId } from '../../src/services/ids';

describe('createTaskId', () => {
  it('makes sorted version 7 UUIDs', () => {
    const now = Date.now();
    const ids = Array.from({ length: 5000 }, (_, index) =>
      createTaskId(now + Math.floor(index / 1000)),
    );
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
    for (const id of ids) {
      expect(id).toMatch(UUID_PATTERN);
      expect(id[14]).toBe('7');
      expect('89ab').toContain(id[19]);
    }
  });

  it('encodes milliseconds and survives clock steps', () => {
    const now = Date.now() + 60_000;
    const first = createTaskId(now);
    expect(parseInt(first.slice(0, 8) + first.slice(9, 13), 16)).toBe(now);
    const after = createTaskId(now - 5_000);
    expect(after > first).toBe(true);
  });
});
