/** The part of a streamed text that may be sent, and whether a stop sequence ended the stream. */
export interface StopFilterResult {
  text: string;
  stopped: boolean;
}

/**
 * Cuts a text that arrives in pieces before the first occurrence of any stop sequence. Text that
 * could be the start of a stop sequence is held back until the next piece shows whether it is one,
 * so that no part of a stop sequence is ever sent, even when it spans several tokens.
 */
export class StopSequenceFilter {
  private readonly stops: string[];
  private heldBack = '';
  private stopped = false;

  /** Empty strings in `stops` are ignored. */
  constructor(stops: readonly string[]) {
    this.stops = stops.filter((stop) => stop !== '');
  }

  /** Adds the next piece; returns the text that is now safe to send. */
  push(piece: string): StopFilterResult {
    if (this.stopped) return { text: '', stopped: true };
    const text = this.heldBack + piece;
    const stopIndex = this.findStop(text);
    if (stopIndex !== -1) {
      this.stopped = true;
      this.heldBack = '';
      return { text: text.slice(0, stopIndex), stopped: true };
    }
    const keep = this.longestPartialStop(text);
    this.heldBack = text.slice(text.length - keep);
    return { text: text.slice(0, text.length - keep), stopped: false };
  }

  /**
   * Returns the text held back at the end of the stream, which turned out not to be a stop
   * sequence.
   */
  flush(): string {
    const text = this.heldBack;
    this.heldBack = '';
    return text;
  }

  private findStop(text: string): number {
    let earliest = -1;
    for (const stop of this.stops) {
      const index = text.indexOf(stop);
      if (index !== -1 && (earliest === -1 || index < earliest)) earliest = index;
    }
    return earliest;
  }

  /** Length of the longest end of `text` that is the beginning of a stop sequence. */
  private longestPartialStop(text: string): number {
    let longest = 0;
    for (const stop of this.stops) {
      for (let length = Math.min(stop.length - 1, text.length); length > longest; length -= 1) {
        if (text.endsWith(stop.slice(0, length))) {
          longest = length;
          break;
        }
      }
    }
    return longest;
  }
}
