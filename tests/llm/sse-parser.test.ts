import type { SseEvent } from '../../src/services/llm/sse-parser';
import { SseLimitError, SseParser } from '../../src/services/llm/sse-parser';

const encoder = new TextEncoder();

/** Feeds `chunks` to `parser` and returns every event it completes. */
function parseChunks(chunks: Uint8Array[], parser = new SseParser()): SseEvent[] {
  const events: SseEvent[] = [];
  for (const chunk of chunks) {
    parser.push(chunk);
    for (let event = parser.read(); event !== undefined; event = parser.read()) events.push(event);
  }
  return events;
}

function parseText(...chunks: string[]): SseEvent[] {
  return parseChunks(chunks.map((chunk) => encoder.encode(chunk)));
}

/** Cuts `bytes` before each of `offsets` (ascending). */
function cutAt(bytes: Uint8Array, offsets: number[]): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  let from = 0;
  for (const offset of offsets) {
    pieces.push(bytes.subarray(from, offset));
    from = offset;
  }
  pieces.push(bytes.subarray(from));
  return pieces;
}

function cutRandomly(bytes: Uint8Array, seed: number, maxChunk: number): Uint8Array[] {
  let state = seed;
  const pieces: Uint8Array[] = [];
  for (let from = 0; from < bytes.length;) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    const size = 1 + (state % maxChunk);
    pieces.push(bytes.subarray(from, from + size));
    from += size;
  }
  return pieces;
}

function message(data: string, type = 'message', lastEventId = ''): SseEvent {
  return { type, data, lastEventId };
}

// Every line ending, a comment, a BOM, two-, three- and four-byte UTF-8 and an event split in lines.
const REFERENCE =
  '\uFEFFdata: Привет\r\n' +
  ': a comment\r\n' +
  'event: greeting\rid: 7\ndata: 世界 😀\r\n\r\n' +
  'data: {"text":"a\\"b"}\n\n' +
  'data: [DONE]\r\r';
const REFERENCE_BYTES = encoder.encode(REFERENCE);
const REFERENCE_EVENTS = [
  message('Привет\n世界 😀', 'greeting', '7'),
  message('{"text":"a\\"b"}', 'message', '7'),
  message('[DONE]', 'message', '7'),
];

describe('SseParser', () => {
  describe('whatever the chunking', () => {
    it('parses the reference stream in one chunk', () => {
      expect(parseChunks([REFERENCE_BYTES])).toEqual(REFERENCE_EVENTS);
    });

    it('gives the same events when cut at any one byte offset', () => {
      for (let offset = 0; offset <= REFERENCE_BYTES.length; offset += 1) {
        expect(parseChunks(cutAt(REFERENCE_BYTES, [offset]))).toEqual(REFERENCE_EVENTS);
      }
    });

    it('gives the same events when cut at any two byte offsets', () => {
      const length = REFERENCE_BYTES.length;
      for (let first = 1; first < length; first += 1) {
        for (let second = first; second < length; second += 1) {
          const events = parseChunks(cutAt(REFERENCE_BYTES, [first, second]));
          if (JSON.stringify(events) !== JSON.stringify(REFERENCE_EVENTS)) {
            throw new Error(`Cutting at ${first} and ${second} gave ${JSON.stringify(events)}`);
          }
        }
      }
    });

    it('gives the same events one byte at a time', () => {
      const bytes = Array.from(REFERENCE_BYTES, (byte) => Uint8Array.of(byte));
      expect(parseChunks(bytes)).toEqual(REFERENCE_EVENTS);
    });

    it.each([1, 2, 3, 4, 5, 42, 1234])(
      'gives the same events cut randomly with seed %i',
      (seed) => {
        const events = parseChunks(cutRandomly(REFERENCE_BYTES, seed, 9));
        expect(events).toEqual(REFERENCE_EVENTS);
      },
    );

    it('returns several events pushed in one chunk one by one', () => {
      const parser = new SseParser();
      parser.push(encoder.encode('data: 1\n\ndata: 2\n\ndata: 3\n\n'));
      expect(parser.read()?.data).toBe('1');
      expect(parser.read()?.data).toBe('2');
      expect(parser.read()?.data).toBe('3');
      expect(parser.read()).toBeUndefined();
    });

    it('keeps unread events when more bytes are pushed before they are read', () => {
      const parser = new SseParser();
      parser.push(encoder.encode('data: 1\n\ndata: 2\n\nda'));
      expect(parser.read()?.data).toBe('1');
      parser.push(encoder.encode('ta: 3\n\n'));
      expect([parser.read()?.data, parser.read()?.data, parser.read()]).toEqual([
        '2',
        '3',
        undefined,
      ]);
    });
  });

  describe('line endings', () => {
    it('counts a \\r ending one chunk and a \\n starting the next as one line break', () => {
      // Two breaks would make an empty line and dispatch "a" on its own.
      expect(parseText('data: a\r', '\ndata: b\r\n\r\n')).toEqual([message('a\nb')]);
    });

    it('counts a \\r at the end of a chunk followed by another \\r as two line breaks', () => {
      expect(parseText('data: a\r', '\rdata: b\r\r')).toEqual([message('a'), message('b')]);
    });

    it('waits across empty chunks for what follows a trailing \\r', () => {
      expect(parseText('data: a\r', '', '\n', 'data: b\n\n')).toEqual([message('a\nb')]);
    });

    it('accepts lone \\r and lone \\n as line endings', () => {
      expect(parseText('data: a\rdata: b\r\rdata: c\ndata: d\n\n')).toEqual([
        message('a\nb'),
        message('c\nd'),
      ]);
    });
  });

  describe('fields', () => {
    it('strips exactly one space after the colon', () => {
      expect(parseText('data:x\n\ndata:  two\n\n')).toEqual([message('x'), message(' two')]);
    });

    it('treats a line without a colon as a field with an empty value', () => {
      expect(parseText('data\ndata\n\n')).toEqual([message('\n')]);
      expect(parseText('data\n\n')).toEqual([message('')]);
    });

    it('ignores comments, unknown fields and events without data', () => {
      expect(parseText(': ping\n\nfoo: bar\n\nevent: lonely\n\ndata: kept\n\n')).toEqual([
        message('kept'),
      ]);
    });

    it('keeps colons inside the value', () => {
      expect(parseText('data: a: b:c\n\n')).toEqual([message('a: b:c')]);
    });

    it('resets the event type after each event but keeps the last event id', () => {
      expect(parseText('event: a\nid: 1\ndata: x\n\ndata: y\n\nid: 2\0\ndata: z\n\n')).toEqual([
        message('x', 'a', '1'),
        message('y', 'message', '1'),
        message('z', 'message', '1'),
      ]);
    });

    it('records retry only when it is all digits', () => {
      const parser = new SseParser();
      parseChunks([encoder.encode('retry: 1500\n\nretry: 9x\n\n')], parser);
      expect(parser.reconnectionTime).toBe(1500);
    });
  });

  describe('decoding', () => {
    it('strips a byte order mark at the start, even split, and keeps one later', () => {
      const bytes = encoder.encode('\uFEFFdata: \uFEFFx\n\n');
      expect(parseChunks(cutAt(bytes, [1, 2]))).toEqual([message('\uFEFFx')]);
    });

    it('decodes a four-byte character split over four chunks', () => {
      const bytes = encoder.encode('data: 😀\n\n');
      expect(parseChunks(cutAt(bytes, [7, 8, 9]))).toEqual([message('😀')]);
    });

    it('replaces invalid UTF-8 with U+FFFD, as the spec says', () => {
      const bytes = Uint8Array.of(...encoder.encode('data: '), 0xff, 0x0a, 0x0a);
      expect(parseChunks([bytes])).toEqual([message('\uFFFD')]);
    });
  });

  describe('the end of the stream', () => {
    it('drops an event without its closing blank line', () => {
      const parser = new SseParser();
      expect(parseChunks([encoder.encode('data: a\n\ndata: cut')], parser)).toEqual([message('a')]);
      parser.end();
      expect(parseChunks([encoder.encode('data: fresh\n\n')], parser)).toEqual([message('fresh')]);
    });
  });

  describe('limits', () => {
    it('throws SseLimitError for a line longer than maxLength', () => {
      const parser = new SseParser({ maxLength: 16 });
      parser.push(encoder.encode('data: 0123456789'));
      expect(parser.read()).toBeUndefined();
      parser.push(encoder.encode('abcdef'));
      expect(() => parser.read()).toThrow(SseLimitError);
    });

    it('throws SseLimitError for an event whose data lines add up past maxLength', () => {
      const parser = new SseParser({ maxLength: 16 });
      parser.push(encoder.encode('data: 0123456789\ndata: 0123456789\n'));
      expect(() => parser.read()).toThrow(/longer than the limit of 16/);
    });

    it('rejects a maxLength that is not a positive integer', () => {
      expect(() => new SseParser({ maxLength: 0 })).toThrow('got 0');
    });

    it('joins a long line pushed in many small chunks in linear time', () => {
      const parser = new SseParser();
      const piece = encoder.encode('x'.repeat(4096));
      parser.push(encoder.encode('data: '));
      const started = performance.now();
      for (let index = 0; index < 512; index += 1) {
        parser.push(piece);
        expect(parser.read()).toBeUndefined();
      }
      parser.push(encoder.encode('\n\n'));
      expect(parser.read()?.data.length).toBe(512 * 4096);
      expect(performance.now() - started).toBeLessThan(1000);
    });
  });
});
