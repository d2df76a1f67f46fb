// Copyright the upcase authors. MIT license.
/**
 * What the transform benchmarks compare `toUpperInPlace` with: the
 * straightforward per-byte loop, and the input both are given.
 *
 * @module
 */

/**
 * Upper-cases ASCII letters in place, one byte at a time, the obvious way.
 *
 * @param buf The bytes to change in place.
 * @returns `buf`, changed.
 *
 * @example Usage
 * ```ts
 * import { naiveToUpperInPlace } from "./_naive_transform.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const bytes = new TextEncoder().encode("héllo");
 * assertEquals(new TextDecoder().decode(naiveToUpperInPlace(bytes)), "HéLLO");
 * ```
 */
export function naiveToUpperInPlace(buf: Uint8Array): Uint8Array {
  for (let i = 0; i < buf.length; i++) {
    const b = buf[i]!;
    if (b >= 0x61 && b <= 0x7a) buf[i] = b - 0x20;
  }
  return buf;
}

/**
 * Deterministic sample input, like the load generator's: about half the
 * bytes are `a`–`z`, the rest any byte value.
 *
 * @param size How many bytes.
 * @param seed Seed of the pseudo-random sequence.
 * @returns A new array of `size` bytes.
 *
 * @example Usage
 * ```ts
 * import { sampleBytes } from "./_naive_transform.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(sampleBytes(64).length, 64);
 * assertEquals(sampleBytes(64), sampleBytes(64));
 * ```
 */
export function sampleBytes(size: number, seed = 0x9e3779b9): Uint8Array {
  const bytes = new Uint8Array(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    // xorshift32
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    bytes[i] = x & 1 ? 0x61 + ((x >>> 8) % 26) : (x >>> 16) & 0xff;
  }
  return bytes;
}
