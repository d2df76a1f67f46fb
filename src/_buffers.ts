// Copyright the upcase authors. MIT license.
// The read-buffer ladder: a connection reads into a small buffer while it is
// quiet, a medium one once it fills the small one, a large one (in
// WebAssembly memory, upper-cased there with SIMD) once it fills the medium
// one, and steps back to the small one after any read that does not fill its
// buffer. The medium and large buffers come from pools shared by the whole
// server. Internal.

import { toUpperInPlace } from "./transform.ts";
import { SimdBuffers } from "./_simd.ts";

/** The first read buffer of every connection: small, so idle ones cost little. */
export const SMALL_BUFFER_SIZE = 256;
/** The read buffer after a read filled the small one. */
export const MEDIUM_BUFFER_SIZE = 8 * 1024;
/** The read buffer of a connection that streams. */
export const LARGE_BUFFER_SIZE = 256 * 1024;
/** Small buffers are cut from slabs of this many: one allocation for all. */
const SMALL_BUFFERS_PER_SLAB = 256;
/** How many medium buffers are kept for reuse. */
const MEDIUM_BUFFERS_KEPT = 256;
/**
 * How many large buffers live in WebAssembly memory (upper-cased there with
 * SIMD), and how many plain ones are kept for reuse beyond those.
 */
const LARGE_BUFFERS_KEPT = 64;
/** Reads shorter than this are upper-cased in JavaScript, not with SIMD. */
const SIMD_MIN = 16;

/**
 * A large buffer beyond the pools. Resizable (it is never resized) so that V8
 * maps its pages itself and a collected one goes back to the system: glibc
 * keeps freed 256 KiB blocks in its heap, which held server RSS at 290-339 MB
 * after waves of 800 streaming clients (85 MB with this; BENCHMARKS.md).
 */
function newLargeBuffer(): Uint8Array<ArrayBuffer> {
  return new Uint8Array(
    new ArrayBuffer(LARGE_BUFFER_SIZE, { maxByteLength: LARGE_BUFFER_SIZE }),
  );
}

/** The rungs of the ladder. */
const enum Rung {
  Small,
  Medium,
  Large,
}

/**
 * The medium and large buffers of one server, for reuse. The WebAssembly
 * memory is made when the first connection streams: idle servers do without.
 */
export class BufferPools {
  #small: Uint8Array<ArrayBuffer>[] = [];
  #medium: Uint8Array<ArrayBuffer>[] = [];
  #large: Uint8Array<ArrayBuffer>[] = [];
  #simd: SimdBuffers | undefined;
  #simdTried = false;

  /**
   * A small buffer. They are cut from shared slabs and kept for reuse: an
   * idle connection then costs no ArrayBuffer of its own.
   */
  takeSmall(): Uint8Array<ArrayBuffer> {
    if (this.#small.length === 0) {
      const slab = new ArrayBuffer(SMALL_BUFFER_SIZE * SMALL_BUFFERS_PER_SLAB);
      for (let i = SMALL_BUFFERS_PER_SLAB - 1; i >= 0; i--) {
        this.#small.push(
          new Uint8Array(slab, i * SMALL_BUFFER_SIZE, SMALL_BUFFER_SIZE),
        );
      }
    }
    return this.#small.pop()!;
  }

  /** Gives a buffer from {@linkcode BufferPools.takeSmall} back. */
  giveSmall(buf: Uint8Array<ArrayBuffer>): void {
    this.#small.push(buf);
  }

  /** A buffer of the rung's size, from its pool when one is free. */
  take(rung: Rung.Medium | Rung.Large): Uint8Array<ArrayBuffer> {
    if (rung === Rung.Medium) {
      return this.#medium.pop() ?? new Uint8Array(MEDIUM_BUFFER_SIZE);
    }
    if (!this.#simdTried) {
      this.#simdTried = true;
      this.#simd = SimdBuffers.create(LARGE_BUFFER_SIZE, LARGE_BUFFERS_KEPT);
    }
    return this.#simd?.take() ?? this.#large.pop() ?? newLargeBuffer();
  }

  /** Gives a buffer from {@linkcode BufferPools.take} back. */
  give(buf: Uint8Array<ArrayBuffer>, rung: Rung.Medium | Rung.Large): void {
    if (rung === Rung.Large && this.#simd?.owns(buf)) {
      this.#simd.give(buf);
      return;
    }
    const [pool, kept] = rung === Rung.Medium
      ? [this.#medium, MEDIUM_BUFFERS_KEPT]
      : [this.#large, LARGE_BUFFERS_KEPT];
    if (pool.length < kept) pool.push(buf);
  }

  /** The SIMD transform, if `buf` lives in WebAssembly memory. */
  simdFor(buf: Uint8Array): SimdBuffers | undefined {
    return this.#simd?.owns(buf) ? this.#simd : undefined;
  }
}

/**
 * One connection's read buffer: {@linkcode ReadBuffer.bytes} to read into,
 * {@linkcode ReadBuffer.upper} to upper-case what was read,
 * {@linkcode ReadBuffer.step} after each read to climb or leave the ladder.
 * A connection that stops right after a full read keeps its buffer until its
 * next read: at most one large buffer.
 */
export class ReadBuffer {
  /** Where the next read goes. */
  bytes: Uint8Array<ArrayBuffer>;
  #small: Uint8Array<ArrayBuffer>;
  #rung = Rung.Small;
  #simd: SimdBuffers | undefined;
  #pools: BufferPools;

  /** @param pools Where the medium and large buffers come from. */
  constructor(pools: BufferPools) {
    this.#pools = pools;
    this.#small = pools.takeSmall();
    this.bytes = this.#small;
  }

  /**
   * Upper-cases the first `n` bytes of {@linkcode ReadBuffer.bytes} in place.
   *
   * @returns Those bytes.
   */
  upper(n: number): Uint8Array {
    const view = this.bytes.subarray(0, n);
    // SIMD beats JavaScript from 16 bytes on; below, the call costs more.
    return this.#simd !== undefined && n >= SIMD_MIN
      ? this.#simd.upper(view)
      : toUpperInPlace(view);
  }

  /**
   * Moves along the ladder after a read of `n` bytes: up after a full
   * buffer, back to the small one after a read that left room.
   */
  step(n: number): void {
    if (n === this.bytes.length && this.#rung !== Rung.Large) {
      // A full buffer: the client streams, so read in larger pieces.
      const next = this.#rung === Rung.Small ? Rung.Medium : Rung.Large;
      this.release();
      this.#rung = next;
      this.bytes = this.#pools.take(next);
      this.#simd = this.#pools.simdFor(this.bytes);
    } else if (n < this.bytes.length && this.#rung !== Rung.Small) {
      // Drained: wait for the next bytes in the small buffer again.
      this.release();
    }
  }

  /** Gives every buffer back; the ReadBuffer is not to be used again. */
  dispose(): void {
    this.release();
    this.#pools.giveSmall(this.#small);
  }

  /** Gives a pooled buffer back and returns to the small one. */
  release(): void {
    if (this.#rung !== Rung.Small) this.#pools.give(this.bytes, this.#rung);
    this.#rung = Rung.Small;
    this.bytes = this.#small;
    this.#simd = undefined;
  }
}
