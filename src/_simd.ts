// Copyright the upcase authors. MIT license.
// Read buffers that live in one WebAssembly memory, so the server can read
// from a socket straight into them and upper-case them in place with 128-bit
// SIMD (src/wasm/upper.wat): several times faster than JavaScript on large
// chunks. Internal.

import { UPPER_WASM_BASE64 } from "./_simd_module.ts";

const WASM_PAGE = 65536;

/** A fixed set of equal buffers in WebAssembly memory. */
export class SimdBuffers {
  #upper: (ptr: number, length: number) => void;
  #memory: ArrayBuffer;
  #free: Uint8Array<ArrayBuffer>[] = [];

  private constructor(
    upper: (ptr: number, length: number) => void,
    memory: ArrayBuffer,
    size: number,
    count: number,
  ) {
    this.#upper = upper;
    this.#memory = memory;
    for (let i = count - 1; i >= 0; i--) {
      this.#free.push(new Uint8Array(memory, i * size, size));
    }
  }

  /**
   * Makes `count` buffers of `size` bytes (a multiple of 64 KiB).
   *
   * @returns The buffers, or undefined where WebAssembly SIMD is missing.
   */
  static create(size: number, count: number): SimdBuffers | undefined {
    let instance: WebAssembly.Instance;
    // The memory never grows: growing would detach every buffer.
    const memory = new WebAssembly.Memory({
      initial: Math.ceil(size * count / WASM_PAGE),
    });
    try {
      const bytes = Uint8Array.from(
        atob(UPPER_WASM_BASE64),
        (c) => c.charCodeAt(0),
      );
      instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {
        env: { memory },
      });
    } catch (err: unknown) {
      if (err instanceof WebAssembly.CompileError) return undefined;
      throw err;
    }
    const upper = instance.exports.upper as (p: number, n: number) => void;
    const buffer = memory.buffer as ArrayBuffer; // not shared: no `shared: true`
    return new SimdBuffers(upper, buffer, size, count);
  }

  /** A free buffer, or undefined when all are in use. */
  take(): Uint8Array<ArrayBuffer> | undefined {
    return this.#free.pop();
  }

  /** Gives back a buffer from {@linkcode SimdBuffers.take}. */
  give(buf: Uint8Array<ArrayBuffer>): void {
    this.#free.push(buf);
  }

  /** Whether `buf` is (a view into) one of these buffers. */
  owns(buf: Uint8Array): boolean {
    return buf.buffer === this.#memory;
  }

  /**
   * Upper-cases `view`, which must lie in one of these buffers, in place.
   *
   * @returns `view`.
   */
  upper(view: Uint8Array): Uint8Array {
    this.#upper(view.byteOffset, view.length);
    return view;
  }
}
