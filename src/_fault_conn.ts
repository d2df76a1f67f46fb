// Copyright the upcase authors. MIT license.
// The per-connection faults of --fault, on the socket: a wrapper of the
// connection that the per-connection loop does not know about, as --trace's
// is. What hits which connection is decided elsewhere (_fault_plan.ts); this
// file only acts. Internal.
//
// Reply bytes go out through #send, which cuts them at a stall, close or
// reset point, slices and paces them; with latency they wait in a bounded
// queue first, so that reads go on while replies wait (the one exception to
// "nothing is read while a write is pending").

import type { Conn } from "./_conn.ts";
import { closeQuietly, sleep } from "./_io.ts";
import {
  type ConnectionFault,
  describeFault,
  type LatencyFault,
} from "./_fault_spec.ts";
import type { ConnectionFaults } from "./_fault_plan.ts";

/** Reply bytes that may wait for a latency fault before writes wait. */
export const LATENCY_QUEUE_BYTES = 1024 * 1024;
/** After a `close` fault: the client's bytes read and dropped, at most. */
export const DRAIN_LIMIT_BYTES = 1024 * 1024;
/** ... for at most this long, in milliseconds; then the socket is closed. */
export const DRAIN_LIMIT_MS = 5000;
/** TLS: how long a reset waits for the last record to reach the socket. */
const TLS_FLUSH_MS = 20;
/** Paced reads and writes move this many milliseconds' worth at a time. */
const PACE_STEP_MS = 50;

/** What a {@linkcode FaultConn} needs from the server. */
export interface FaultConnOptions {
  /**
   * Sends an RST on the connection's socket and nothing else (FFI), once the
   * bytes written have gone out.
   */
  reset(conn: Conn): Promise<void>;
  /** A line for `--trace`: what a fault did, where it did it. */
  note?(text: string): void;
}

type Point = "stall" | "close" | "reset";

/** Bytes per step of a paced stream of `rate` bytes/s. */
function paceStep(rate: number): number {
  return Math.max(1, Math.floor(rate * PACE_STEP_MS / 1000));
}

/**
 * A connection with faults: see the top of this file. The loop reads and
 * writes it as any other; it says what hit it in {@linkcode said}.
 */
export class FaultConn implements Conn {
  readonly remoteAddr: Deno.Addr;
  readonly localAddr: Deno.Addr;
  readonly healthCheck?: boolean;
  /** The faults that hit it, in words, for the log. */
  readonly said: string[];
  /** Their kinds, for the counts. */
  readonly kinds: string[];
  /** Resolves once the socket is really closed (after a queued reply). */
  readonly closed: Promise<void>;
  #closedNow = Promise.withResolvers<void>();
  #conn: Conn;
  #options: FaultConnOptions;
  #random: () => number;
  #latency: LatencyFault | undefined;
  #bandwidth: number | undefined;
  #slowRead: number | undefined;
  #slice: { min: number; max: number; gap: number } | undefined;
  #slowClose: number | undefined;
  #corrupt: { every: number; skip: number } | undefined;
  /** The first byte-count point (stall, close or reset `after=N`). */
  #limit: { bytes: number; kind: Point } | undefined;
  #timers: ReturnType<typeof setTimeout>[] = [];
  /** Reply bytes the loop has written (the corrupt fault's offset). */
  #offset = 0;
  /** Where the next flipped bit goes, as a reply offset. */
  #nextFlip = Infinity;
  /** Reply bytes sent to the socket. */
  #sent = 0;
  #ended: Point | undefined;
  #closed = new AbortController();
  /** Aborted when the connection is cut off: waits end at once. */
  #cut = new AbortController();
  #queue: { bytes: Uint8Array; due: number }[] = [];
  #queued = 0;
  #pump: Promise<void> | undefined;
  #pumpError: unknown;
  #space: PromiseWithResolvers<void> | undefined;
  /** A #send under way: the point's FIN or RST waits for it. */
  #sending: Promise<void> = Promise.resolve();
  /** Reads and writes of the loop under way (a close then cuts them off). */
  #busy = 0;
  #lastArrival = performance.now();
  #nextWrite = 0;
  #nextRead = 0;
  #stalled = Promise.withResolvers<never>();

  /**
   * @param conn The connection, after its PROXY header and TLS handshake.
   * @param hits The faults that hit it, and its own random sequence.
   * @param options How to reset it, and where trace lines go.
   */
  constructor(
    conn: Conn,
    hits: ConnectionFaults,
    options: FaultConnOptions,
  ) {
    this.#conn = conn;
    this.remoteAddr = conn.remoteAddr;
    this.localAddr = conn.localAddr;
    if (conn.healthCheck !== undefined) this.healthCheck = conn.healthCheck;
    this.#options = options;
    this.#random = hits.random;
    this.closed = this.#closedNow.promise;
    this.said = hits.faults.map(describeFault);
    this.kinds = hits.faults.map((fault) => fault.kind);
    this.#stalled.promise.catch(() => {});
    for (const fault of hits.faults) this.#take(fault);
  }

  #take(fault: ConnectionFault): void {
    switch (fault.kind) {
      case "latency":
        this.#latency ??= fault;
        return;
      case "bandwidth":
        this.#bandwidth = Math.min(this.#bandwidth ?? Infinity, fault.rate);
        return;
      case "slow-read":
        this.#slowRead = Math.min(this.#slowRead ?? Infinity, fault.rate);
        return;
      case "slice":
        this.#slice ??= fault;
        return;
      case "slow-close":
        this.#slowClose = Math.max(this.#slowClose ?? 0, fault.delay);
        return;
      case "corrupt":
        if (this.#corrupt === undefined) {
          this.#corrupt = fault;
          this.#nextFlip = fault.skip +
            Math.floor(this.#random() * fault.every);
        }
        return;
      case "stall":
      case "close":
      case "reset":
        if (fault.at === 0 || fault.after === 0) {
          // From the start: before anything is read or written.
          this.#end(fault.kind, true);
        } else if (fault.at !== undefined) {
          const kind = fault.kind;
          this.#timers.push(setTimeout(() => this.#end(kind), fault.at));
        } else if (
          this.#limit === undefined || fault.after! < this.#limit.bytes
        ) {
          this.#limit = { bytes: fault.after!, kind: fault.kind };
        }
    }
  }

  async read(p: Uint8Array): Promise<number | null> {
    this.#busy++;
    try {
      return await this.#read(p);
    } finally {
      this.#busy--;
    }
  }

  async #read(p: Uint8Array): Promise<number | null> {
    if (this.#ended === "stall") return await this.#stalled.promise;
    if (this.#ended === "reset") return null;
    if (this.#ended === "close") return await this.#drain();
    let view = p;
    if (this.#slowRead !== undefined) {
      view = p.subarray(0, Math.min(p.length, paceStep(this.#slowRead)));
      const wait = Math.round(this.#nextRead - performance.now());
      if (wait > 0) {
        this.#options.note?.(
          `read() of at most ${view.length} bytes held ${wait} ms: ${this.#slowRead} bytes/s (fault: slow-read)`,
        );
        await sleep(wait, this.#cut.signal);
      }
    }
    let n: number | null;
    try {
      n = await this.#conn.read(view);
    } catch (err: unknown) {
      if (this.#ended === "reset") return null; // the RST we sent
      throw err;
    }
    if (this.#ended === "reset") return null;
    // Stalled while this read waited: what came is not taken.
    if (this.#ended === "stall") return await this.#stalled.promise;
    if (n !== null && this.#slowRead !== undefined) {
      this.#nextRead = Math.max(performance.now(), this.#nextRead) +
        n * 1000 / this.#slowRead;
    }
    this.#lastArrival = performance.now();
    return n;
  }

  async write(p: Uint8Array): Promise<number> {
    this.#busy++;
    try {
      return await this.#write(p);
    } finally {
      this.#busy--;
    }
  }

  async #write(p: Uint8Array): Promise<number> {
    if (this.#pumpError !== undefined) throw this.#pumpError;
    if (this.#ended === "stall") return await this.#stalled.promise;
    // After a close or reset point the rest is dropped (see `sent`).
    if (this.#ended !== undefined) return p.length;
    // The loop reuses its buffer: a queued or corrupted reply is a copy.
    const bytes = this.#latency !== undefined || this.#corrupt !== undefined
      ? p.slice()
      : p;
    this.#flipBits(bytes);
    if (this.#latency === undefined) {
      await this.#sendInTurn(bytes);
      if (this.#pumpError !== undefined) throw this.#pumpError;
      return p.length;
    }
    const { delay, jitter } = this.#latency;
    const held = Math.round(delay + (this.#random() * 2 - 1) * jitter);
    // Order is kept: a chunk never goes before the one written before it.
    const last = this.#queue.at(-1)?.due ?? 0;
    this.#queue.push({
      bytes,
      due: Math.max(last, this.#lastArrival + held),
    });
    this.#queued += bytes.length;
    this.#options.note?.(
      `write(${bytes.length} bytes) held ${held} ms (fault: latency)`,
    );
    this.#pump ??= this.#runPump();
    while (
      this.#queued > LATENCY_QUEUE_BYTES && !this.#cutOff &&
      this.#pumpError === undefined
    ) {
      this.#space = Promise.withResolvers();
      await this.#space.promise;
    }
    if (this.#pumpError !== undefined) throw this.#pumpError;
    return p.length;
  }

  /** Flips one bit in one byte of every `every` reply bytes past `skip`. */
  #flipBits(bytes: Uint8Array): void {
    const corrupt = this.#corrupt;
    if (corrupt === undefined) return;
    const end = this.#offset + bytes.length;
    while (this.#nextFlip < end) {
      const at = this.#nextFlip - this.#offset;
      const bit = Math.floor(this.#random() * 8);
      bytes[at]! ^= 1 << bit;
      this.#options.note?.(
        `reply byte ${this.#nextFlip} bit ${bit} flipped (fault: corrupt)`,
      );
      const block = Math.floor((this.#nextFlip - corrupt.skip) / corrupt.every);
      this.#nextFlip = corrupt.skip + (block + 1) * corrupt.every +
        Math.floor(this.#random() * corrupt.every);
    }
    this.#offset = end;
  }

  /** Sends the latency queue's chunks, each when it is due. */
  async #runPump(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const item = this.#queue[0]!;
        await sleep(item.due - performance.now(), this.#cut.signal);
        if (this.#cutOff) return;
        await this.#sendInTurn(item.bytes);
        this.#queue.shift();
        this.#queued -= item.bytes.length;
        if (this.#queued <= LATENCY_QUEUE_BYTES) this.#space?.resolve();
      }
    } catch (err: unknown) {
      this.#pumpError = err;
      this.#space?.resolve();
    } finally {
      this.#pump = undefined;
    }
  }

  #sendInTurn(bytes: Uint8Array): Promise<void> {
    const sending = this.#send(bytes);
    this.#sending = sending.catch(() => {});
    return sending;
  }

  /** Writes reply bytes: cut at the point, sliced, paced. */
  async #send(bytes: Uint8Array): Promise<void> {
    let point: Point | undefined;
    const limit = this.#limit;
    if (limit !== undefined && this.#sent + bytes.length >= limit.bytes) {
      bytes = bytes.subarray(0, Math.max(0, limit.bytes - this.#sent));
      point = limit.kind;
    }
    if (this.#bandwidth !== undefined && bytes.length > 0) {
      this.#options.note?.(
        `write(${bytes.length} bytes) paced at ${this.#bandwidth} bytes/s (fault: bandwidth)`,
      );
    }
    let first = true;
    while (bytes.length > 0) {
      if (this.#ended !== undefined || this.#cutOff) return;
      let size = bytes.length;
      const slice = this.#slice;
      if (slice !== undefined) {
        size = slice.min +
          Math.floor(this.#random() * (slice.max - slice.min + 1));
        if (!first && slice.gap > 0) {
          await sleep(slice.gap, this.#cut.signal);
        }
      }
      if (this.#bandwidth !== undefined) {
        size = Math.min(size, paceStep(this.#bandwidth));
        await sleep(this.#nextWrite - performance.now(), this.#cut.signal);
        this.#nextWrite = Math.max(performance.now(), this.#nextWrite) +
          Math.min(size, bytes.length) * 1000 / this.#bandwidth;
      }
      const piece = bytes.subarray(0, size);
      let written = 0;
      while (written < piece.length) {
        written += await this.#conn.write(piece.subarray(written));
      }
      this.#sent += piece.length;
      if (slice !== undefined && (size < bytes.length || !first)) {
        this.#options.note?.(
          `write(${piece.length} bytes), one piece (fault: slice)`,
        );
      }
      bytes = bytes.subarray(piece.length);
      first = false;
    }
    if (point !== undefined) await this.#end(point, true);
  }

  /** The stall, close or reset point is reached: act. */
  async #end(kind: Point, inTurn = false): Promise<void> {
    if (this.#ended !== undefined || this.#cutOff) return;
    this.#ended = kind;
    if (kind === "reset") {
      // Set at once: a close() from now on waits for the RST.
      this.#resetting = this.#sendReset(inTurn).catch(() => {});
      return await this.#resetting;
    }
    // What is being sent goes out first (a timed point strikes mid-write).
    if (!inTurn) await this.#sending;
    const at = `${this.#sent} reply bytes`;
    switch (kind) {
      case "stall":
        this.#options.note?.(
          `stalled after ${at}: nothing more is read or written, the connection stays open (fault: stall)`,
        );
        return;
      case "close":
        this.#options.note?.(
          `shutdown(SHUT_WR) after ${at}: FIN sent, the reply cut short (fault: close)`,
        );
        try {
          await this.#conn.closeWrite();
        } catch {
          // The client has gone already: nothing to end.
        }
    }
  }

  /** The reset point: what is being sent goes out, then the RST. */
  async #sendReset(inTurn: boolean): Promise<void> {
    if (!inTurn) await this.#sending;
    // TLS: the last record may still be on its way to the socket.
    if ((this.#conn as { tls?: boolean }).tls === true && this.#sent > 0) {
      await new Promise((resolve) => setTimeout(resolve, TLS_FLUSH_MS));
    }
    await this.#options.reset(this.#conn);
    this.#options.note?.(
      `RST sent after ${this.#sent} reply bytes, no FIN before it (fault: reset)`,
    );
  }

  /** After a close fault: the client's bytes read and dropped, bounded. */
  async #drain(): Promise<null> {
    const scratch = new Uint8Array(16 * 1024);
    const deadline = performance.now() + DRAIN_LIMIT_MS;
    let dropped = 0;
    try {
      while (dropped < DRAIN_LIMIT_BYTES) {
        const left = deadline - performance.now();
        if (left <= 0) break;
        const timer = Promise.withResolvers<null>();
        const id = setTimeout(() => timer.resolve(null), left);
        const n = await Promise.race([this.#conn.read(scratch), timer.promise])
          .finally(() => clearTimeout(id));
        if (n === null) break;
        dropped += n;
      }
    } catch {
      // A reset or a closed socket: the end all the same.
    }
    return null;
  }

  /** The RST under way: the socket is closed only after it (or a FIN goes). */
  #resetting: Promise<void> | undefined;
  /** Closed by the loop, its reply still going out (or a slow close). */
  #lingering = false;
  /** Set when the connection is closed with a read or write under way. */
  #cutOff = false;

  closeWrite(): Promise<void> {
    if (this.#ended !== undefined) return Promise.resolve();
    return (async () => {
      await this.#drained();
      await this.#conn.closeWrite();
    })();
  }

  /** Resolves once the latency queue is empty. */
  async #drained(): Promise<void> {
    while (this.#pump !== undefined) await this.#pump;
    await this.#sending;
  }

  /**
   * Closes. At the end of a normal exchange the queued reply goes out first
   * (and a slow close waits); cut off mid-read or mid-write (the idle
   * timeout, the end of a shutdown), it closes at once.
   */
  /** Whether a reset fault sent its RST (the trace's close() then says so). */
  get resetSent(): boolean {
    return this.#ended === "reset";
  }

  /** Reply bytes written to the socket. */
  get sent(): number {
    return this.#sent;
  }

  close(): void {
    if (this.#closed.signal.aborted) {
      // Closed while its reply still goes out: now at once (a shutdown's end).
      if (this.#lingering) {
        this.#cutOff = true;
        this.#cut.abort();
        this.#stalled.reject(new Deno.errors.BadResource("closed"));
        closeQuietly(this.#conn);
        this.#closedNow.resolve();
        return;
      }
      throw new Deno.errors.BadResource("Already closed");
    }
    this.#cutOff = this.#busy > 0 || this.#ended === "stall";
    this.#closed.abort();
    if (this.#cutOff) this.#cut.abort();
    for (const timer of this.#timers) clearTimeout(timer);
    this.#stalled.reject(new Deno.errors.BadResource("closed"));
    this.#space?.resolve();
    const lingers = this.#ended === "reset" ||
      (!this.#cutOff &&
        (this.#pump !== undefined || this.#slowClose !== undefined));
    if (!lingers) {
      this.#closedNow.resolve();
      this.#conn.close();
      return;
    }
    this.#lingering = true;
    (async () => {
      if (this.#ended === "reset") {
        await this.#resetting;
        closeQuietly(this.#conn);
        this.#lingering = false;
        this.#closedNow.resolve();
        return;
      }
      await this.#drained();
      if (this.#slowClose !== undefined && this.#ended === undefined) {
        this.#options.note?.(
          `close() held ${this.#slowClose} ms after the reply (fault: slow-close)`,
        );
        await sleep(this.#slowClose, this.#cut.signal);
      }
      closeQuietly(this.#conn);
      this.#lingering = false;
      this.#closedNow.resolve();
    })();
  }

  setNoDelay(noDelay?: boolean): void {
    this.#conn.setNoDelay?.(noDelay);
  }
}
