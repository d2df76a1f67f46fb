// Copyright the upcase authors. MIT license.
/**
 * A token bucket with a first-come, first-served queue: the side channel's
 * share of the server's time. Each connection waits for a token before each
 * request, and asks for the next one only after it has been answered, so
 * connections that all want more take turns: one client's pipelined flood
 * gets the same share as any other client, and all of them together no more
 * than the rate. Internal.
 *
 * @module
 */

/** The shortest pause between two hand-outs of tokens, in milliseconds. */
const TICK_MS = 50;

/** A rate of requests shared fairly by the connections that wait for it. */
export class RequestBudget {
  readonly #rate: number;
  readonly #burst: number;
  #tokens: number;
  #updated: number;
  #waiting: (() => void)[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #now: () => number;

  /**
   * @param rate Requests per second, on average.
   * @param burst Requests that may go at once after a quiet time.
   * @param now The clock, in milliseconds (for tests).
   */
  constructor(rate: number, burst: number, now: () => number = Date.now) {
    this.#rate = rate;
    this.#burst = burst;
    this.#tokens = burst;
    this.#now = now;
    this.#updated = now();
  }

  /**
   * Resolves when it is this caller's turn: at once while tokens are left
   * and nobody waits, else after everyone who asked earlier.
   *
   * @param signal Stops waiting (the connection closed): the caller leaves
   *   the queue and the promise rejects with the signal's reason.
   * @returns A promise that resolves with the caller's token.
   */
  take(signal?: AbortSignal): Promise<void> {
    this.#refill();
    if (this.#waiting.length === 0 && this.#tokens >= 1) {
      this.#tokens--;
      return Promise.resolve();
    }
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    if (signal?.aborted) {
      reject(signal.reason);
      return promise;
    }
    const leave = () => {
      const at = this.#waiting.indexOf(entry);
      if (at >= 0) this.#waiting.splice(at, 1);
      reject(signal!.reason);
    };
    const entry = () => {
      signal?.removeEventListener("abort", leave);
      resolve();
    };
    this.#waiting.push(entry);
    signal?.addEventListener("abort", leave, { once: true });
    this.#schedule();
    return promise;
  }

  /** Stops the timer; waiters left are never served. */
  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#waiting = [];
  }

  #refill(): void {
    const now = this.#now();
    this.#tokens = Math.min(
      this.#burst,
      this.#tokens + (now - this.#updated) * this.#rate / 1000,
    );
    this.#updated = now;
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#waiting.length === 0) return;
    // Tokens go out in batches, at most every TICK_MS: a wake-up of the
    // process costs more than the request it lets through.
    const wait = Math.max(
      TICK_MS,
      Math.ceil((1 - this.#tokens) * 1000 / this.#rate),
    );
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#refill();
      while (this.#waiting.length > 0 && this.#tokens >= 1) {
        this.#tokens--;
        this.#waiting.shift()!();
      }
      this.#schedule();
    }, wait);
  }
}
