/** One dispatched Server-Sent Event. */
export interface SseEvent {
  /** The `event` field, or `message` when the event named none. */
  type: string;
  /** The `data` lines of the event joined with `\n`. */
  data: string;
  /** The last event id seen on the stream so far (ids carry over to later events), or `''`. */
  lastEventId: string;
}

/** Options for {@link SseParser}. */
export interface SseParserOptions {
  /**
   * Longest line, and longest data of one event, in UTF-16 code units. A stream that goes past it is
   * broken or hostile; {@link SseParser.read} then throws {@link SseLimitError}.
   * @default 4194304 (4 Mi)
   */
  maxLength?: number;
}

/** Thrown by {@link SseParser.read} when a line or an event grows past `maxLength`. */
export class SseLimitError extends Error {
  readonly limit: number;

  constructor(limit: number) {
    super(`A server-sent event line or event is longer than the limit of ${limit} characters`);
    this.name = 'SseLimitError';
    this.limit = limit;
  }
}

const DEFAULT_MAX_LENGTH = 4 * 1024 * 1024;
const LF = 0x0a;
const CR = 0x0d;
const COLON = 0x3a;
const SPACE = 0x20;
const STREAM_OPTIONS = { stream: true } as const;

/**
 * An incremental parser for the `text/event-stream` format, as the WHATWG HTML standard interprets it.
 *
 * Bytes go in with {@link push} in chunks cut anywhere (inside a UTF-8 sequence, between `\r` and `\n`);
 * complete events come out of {@link read}. Text is decoded incrementally, each character is scanned
 * once, and a line split over many chunks is joined once, when it ends; so the cost of a chunk does not
 * depend on how much came before it.
 *
 * @example
 * parser.push(chunk);
 * for (let event = parser.read(); event !== undefined; event = parser.read()) handle(event);
 */
export class SseParser {
  private readonly maxLength: number;
  // ignoreBOM: false makes the decoder drop one byte order mark at the start of the stream, as the spec says.
  private readonly decoder = new TextDecoder('utf-8');
  /** The last decoded text; `position` is where its unread part begins. */
  private buffer = '';
  private position = 0;
  /** Pieces of a line that began in earlier chunks and has not ended yet. */
  private readonly partial: string[] = [];
  private partialLength = 0;
  /** The last character read was a `\r` ending a chunk; a `\n` right after it belongs to it. */
  private afterCr = false;
  private eventType = '';
  private data = '';
  private hasData = false;
  private lastEventId = '';
  private retry: number | undefined;

  constructor(options: SseParserOptions = {}) {
    const maxLength = options.maxLength ?? DEFAULT_MAX_LENGTH;
    if (!Number.isInteger(maxLength) || maxLength < 1) {
      throw new RangeError(`SseParser: maxLength must be a positive integer, got ${maxLength}`);
    }
    this.maxLength = maxLength;
  }

  /** The `retry` field last sent by the server, in milliseconds; the parser itself never reconnects. */
  get reconnectionTime(): number | undefined {
    return this.retry;
  }

  /** Adds the next bytes of the stream. Call {@link read} until it returns `undefined` afterwards. */
  push(chunk: Uint8Array): void {
    const text = this.decoder.decode(chunk, STREAM_OPTIONS);
    if (text.length === 0) return;
    // Normally read() has consumed the whole buffer; keep any unread rest if it has not.
    this.buffer =
      this.position < this.buffer.length ? this.buffer.slice(this.position) + text : text;
    this.position = 0;
  }

  /**
   * Marks the end of the stream. An event without its closing blank line is dropped, as the spec says;
   * the parser is then ready for a new stream.
   */
  end(): void {
    this.decoder.decode();
    this.buffer = '';
    this.position = 0;
    this.partial.length = 0;
    this.partialLength = 0;
    this.afterCr = false;
    this.resetEvent();
  }

  /**
   * Returns the next complete event, or `undefined` when the bytes pushed so far hold no further one.
   * @throws SseLimitError when a line or an event is longer than `maxLength`.
   */
  read(): SseEvent | undefined {
    const buffer = this.buffer;
    const length = buffer.length;
    let start = this.position;
    if (this.afterCr && start < length) {
      this.afterCr = false;
      if (buffer.charCodeAt(start) === LF) start += 1;
    }
    let index = start;
    while (index < length) {
      const code = buffer.charCodeAt(index);
      if (code !== LF && code !== CR) {
        index += 1;
        continue;
      }
      const end = index;
      index += 1;
      if (code === CR) {
        if (index === length) this.afterCr = true;
        else if (buffer.charCodeAt(index) === LF) index += 1;
      }
      const event =
        this.partial.length === 0
          ? this.processLine(buffer, start, end)
          : this.processJoinedLine(buffer.slice(start, end));
      start = index;
      if (event !== undefined) {
        this.position = start;
        return event;
      }
    }
    this.keepPartialLine(buffer, start);
    return undefined;
  }

  /** Sets aside the unfinished last line of the buffer until a later chunk ends it. */
  private keepPartialLine(buffer: string, start: number): void {
    if (start < buffer.length) {
      this.partial.push(start === 0 ? buffer : buffer.slice(start));
      this.partialLength += buffer.length - start;
    }
    this.buffer = '';
    this.position = 0;
    if (this.partialLength > this.maxLength) throw new SseLimitError(this.maxLength);
  }

  private processJoinedLine(last: string): SseEvent | undefined {
    this.partial.push(last);
    const line = this.partial.join('');
    this.partial.length = 0;
    this.partialLength = 0;
    return this.processLine(line, 0, line.length);
  }

  /** Interprets the line `text[start, end)`; returns the event an empty line completes, if any. */
  private processLine(text: string, start: number, end: number): SseEvent | undefined {
    if (start === end) return this.dispatch();
    if (text.charCodeAt(start) === COLON) return undefined;
    let colon = text.indexOf(':', start);
    if (colon === -1 || colon > end) colon = end;
    let valueStart = colon + 1;
    if (valueStart < end && text.charCodeAt(valueStart) === SPACE) valueStart += 1;
    const nameLength = colon - start;
    if (nameLength === 4 && text.startsWith('data', start)) {
      this.appendData(valueStart < end ? text.slice(valueStart, end) : '');
    } else if (nameLength === 5 && text.startsWith('event', start)) {
      this.eventType = text.slice(valueStart, end);
    } else if (nameLength === 2 && text.startsWith('id', start)) {
      const id = text.slice(valueStart, end);
      if (!id.includes('\0')) this.lastEventId = id;
    } else if (nameLength === 5 && text.startsWith('retry', start)) {
      const value = text.slice(valueStart, end);
      if (/^[0-9]+$/.test(value)) this.retry = Number(value);
    }
    return undefined;
  }

  private appendData(value: string): void {
    // Joining with '\n' as lines arrive equals the spec's "append value and LF, strip the last LF".
    if (this.hasData) this.data = `${this.data}\n${value}`;
    else this.data = value;
    this.hasData = true;
    if (this.data.length > this.maxLength) throw new SseLimitError(this.maxLength);
  }

  private dispatch(): SseEvent | undefined {
    if (!this.hasData) {
      this.eventType = '';
      return undefined;
    }
    const event: SseEvent = {
      type: this.eventType === '' ? 'message' : this.eventType,
      data: this.data,
      lastEventId: this.lastEventId,
    };
    this.resetEvent();
    return event;
  }

  private resetEvent(): void {
    this.eventType = '';
    this.data = '';
    this.hasData = false;
  }
}
