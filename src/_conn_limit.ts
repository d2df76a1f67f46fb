// Copyright the upcase authors. MIT license.
// The limit on connections served at once (--max-conns): a counter in one
// thread, or one shared by every Worker of a server through a
// SharedArrayBuffer, so that the limit holds for the whole server. Internal.

/** Admission to the server: a slot per open connection. */
export interface ConnLimit {
  /** Takes a slot; false when the limit is reached. */
  tryAcquire(): boolean;
  /** Gives a slot back. */
  release(): void;
}

/** A limit of one server thread; 0 means none. */
export class LocalLimit implements ConnLimit {
  #max: number;
  #open = 0;

  /** @param max The most connections at once; 0 for no limit. */
  constructor(max: number) {
    this.#max = max;
  }

  tryAcquire(): boolean {
    if (this.#max > 0 && this.#open >= this.#max) return false;
    this.#open++;
    return true;
  }

  release(): void {
    this.#open--;
  }
}

/**
 * A limit shared by the Workers of one server: slot `0` of the Int32Array
 * counts the open connections of all, and slot `1 + worker` those of each,
 * so that the count can be repaired when a Worker dies.
 */
export class SharedLimit implements ConnLimit {
  #counts: Int32Array;
  #worker: number;
  #max: number;

  /**
   * @param counts The shared counters (see {@linkcode sharedLimitCounters}).
   * @param worker This Worker's number, from 0.
   * @param max The most connections at once; 0 for no limit.
   */
  constructor(counts: Int32Array, worker: number, max: number) {
    this.#counts = counts;
    this.#worker = worker;
    this.#max = max;
  }

  tryAcquire(): boolean {
    const before = Atomics.add(this.#counts, 0, 1);
    if (this.#max > 0 && before >= this.#max) {
      Atomics.sub(this.#counts, 0, 1);
      return false;
    }
    Atomics.add(this.#counts, 1 + this.#worker, 1);
    return true;
  }

  release(): void {
    Atomics.sub(this.#counts, 1 + this.#worker, 1);
    Atomics.sub(this.#counts, 0, 1);
  }
}

/**
 * The shared counters of a {@linkcode SharedLimit} for `workers` Workers.
 *
 * @param workers How many Workers share them.
 * @returns Counters in a SharedArrayBuffer, all 0.
 */
export function sharedLimitCounters(workers: number): Int32Array {
  return new Int32Array(new SharedArrayBuffer(4 * (1 + workers)));
}

/**
 * Takes a dead Worker's connections off the shared count: they are gone.
 *
 * @param counts The shared counters.
 * @param worker The Worker that died.
 * @returns How many connections it had open.
 */
export function forgetWorker(counts: Int32Array, worker: number): number {
  const open = Atomics.exchange(counts, 1 + worker, 0);
  Atomics.sub(counts, 0, open);
  return open;
}
