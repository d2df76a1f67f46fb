// Copyright the upcase authors. MIT license.
// A live progress line on stderr, for long runs (`client.ts -`, `--bench`):
// rewritten in place, cleared at the end. Internal.

/** How often the line is redrawn, in milliseconds. */
const REDRAW_MS = 250;

/** One line on stderr that `render` redraws until {@linkcode stop}. */
export class ProgressLine {
  #render: (elapsedMs: number) => string;
  #started = performance.now();
  #timer: ReturnType<typeof setInterval>;
  #encoder = new TextEncoder();
  #shown = false;

  /**
   * Starts redrawing the line every 250 ms.
   *
   * @param render The line's text (no newline) for the time since the start.
   */
  constructor(render: (elapsedMs: number) => string) {
    this.#render = render;
    this.#timer = setInterval(() => this.draw(), REDRAW_MS);
  }

  /** Redraws the line now. */
  draw(): void {
    const text = this.#render(performance.now() - this.#started);
    this.#write(`\r${text}\x1b[K`);
    this.#shown = true;
  }

  /** Stops redrawing and clears the line. */
  stop(): void {
    clearInterval(this.#timer);
    if (this.#shown) this.#write("\r\x1b[K");
  }

  #write(text: string): void {
    try {
      Deno.stderr.writeSync(this.#encoder.encode(text));
    } catch (err: unknown) {
      // A terminal that has gone: no line to draw.
      if (!(err instanceof Deno.errors.BrokenPipe)) throw err;
    }
  }
}
