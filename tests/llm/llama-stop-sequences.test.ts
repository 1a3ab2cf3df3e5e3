import { StopSequenceFilter } from '../../src/services/llm/stop-sequence-filter';

/** Feeds `pieces` one at a time and returns what was sent and whether a stop ended the stream. */
function run(stops: string[], pieces: string[]): { sent: string[]; stopped: boolean } {
  const filter = new StopSequenceFilter(stops);
  const sent: string[] = [];
  for (const piece of pieces) {
    const { text, stopped } = filter.push(piece);
    if (text !== '') sent.push(text);
    if (stopped) return { sent, stopped };
  }
  const rest = filter.flush();
  if (rest !== '') sent.push(rest);
  return { sent, stopped: false };
}

describe('StopSequenceFilter', () => {
  it('passes text without stop sequences', () => {
    expect(run([], ['a', 'b'])).toEqual({ sent: ['a', 'b'], stopped: false });
  });

  it('cuts before a stop sequence inside one piece', () => {
    expect(run(['END'], ['abcENDdef'])).toEqual({ sent: ['abc'], stopped: true });
  });

  it('cuts before a stop sequence spread over several pieces', () => {
    expect(run(['klm'], ['i', 'j', 'k', 'l', 'm', 'n'])).toEqual({
      sent: ['i', 'j'],
      stopped: true,
    });
  });

  it('releases text that is not a stop', () => {
    expect(run(['klm'], ['j', 'k', 'l', 'x'])).toEqual({ sent: ['j', 'klx'], stopped: false });
  });

  it('sends held-back text at the end', () => {
    expect(run(['klm'], ['j', 'k', 'l'])).toEqual({ sent: ['j', 'kl'], stopped: false });
  });

  it('cuts at the earliest of several stop sequences', () => {
    expect(run(['cd', 'b'], ['abcd'])).toEqual({ sent: ['a'], stopped: true });
  });

  it('stops on a stop sequence at the start', () => {
    expect(run(['a'], ['abc'])).toEqual({ sent: [], stopped: true });
  });

  it('ignores empty stop sequences', () => {
    expect(run([''], ['ab'])).toEqual({ sent: ['ab'], stopped: false });
  });

  it('sends nothing after it stopped', () => {
    const filter = new StopSequenceFilter(['x']);
    filter.push('x');
    expect(filter.push('more')).toEqual({ text: '', stopped: true });
  });
});
