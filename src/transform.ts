// Copyright the upcase authors. MIT license.
/**
 * The transform: C `toupper` in the C locale, applied to bytes.
 *
 * `a`–`z` (0x61–0x7a) become `A`–`Z`; every other byte, including every byte
 * of 0x80 and above, passes through unchanged. The output always has the
 * input's length, so the transform is safe for binary data and for a stream
 * cut at any byte boundary.
 *
 * @module
 */

/** Below this many bytes the plain byte loop beats the word-at-a-time one. */
const WORD_LOOP_MIN = 64;

/**
 * Upper-cases ASCII letters in place and returns the same array.
 *
 * It allocates nothing but a 32-bit view of the same memory: from 64 bytes
 * on, four bytes are handled at a time with 32-bit arithmetic where the array
 * is aligned for it. (The server upper-cases large reads with WebAssembly
 * SIMD instead, in the memory it reads into.)
 *
 * @param bytes The bytes to change in place.
 * @returns `bytes`, changed.
 *
 * @example Usage
 * ```ts
 * import { toUpperInPlace } from "@upcase/upcase";
 * import { assertEquals } from "@std/assert";
 *
 * const bytes = new TextEncoder().encode("hello, world");
 * toUpperInPlace(bytes);
 * assertEquals(new TextDecoder().decode(bytes), "HELLO, WORLD");
 * ```
 */
export function toUpperInPlace(bytes: Uint8Array): Uint8Array {
  const length = bytes.length;
  if (length < WORD_LOOP_MIN) {
    upperBytes(bytes, 0, length);
    return bytes;
  }
  // Bytes before the first 4-byte boundary and after the last one.
  const head = (4 - (bytes.byteOffset & 3)) & 3;
  const words = (length - head) >>> 2;
  const tail = head + words * 4;
  upperBytes(bytes, 0, head);
  upperWords(new Uint32Array(bytes.buffer, bytes.byteOffset + head, words));
  upperBytes(bytes, tail, length);
  return bytes;
}

/**
 * Returns a copy of `input` with ASCII letters upper-cased, like C `toupper`
 * in the C locale. Strings are encoded as UTF-8 first.
 *
 * @param input The bytes or text to transform; it is not changed.
 * @returns A new array of the same length as the (encoded) input.
 *
 * @example Bytes
 * ```ts
 * import { toUpper } from "@upcase/upcase";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(toUpper(new Uint8Array([0x61, 0x7a, 0xe9, 0x00])), new Uint8Array([0x41, 0x5a, 0xe9, 0x00]));
 * ```
 *
 * @example Text keeps non-ASCII letters as they are
 * ```ts
 * import { toUpper } from "@upcase/upcase";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(new TextDecoder().decode(toUpper("héllo")), "HéLLO");
 * ```
 */
export function toUpper(input: Uint8Array | string): Uint8Array {
  const bytes = typeof input === "string"
    ? new TextEncoder().encode(input)
    : input.slice();
  return toUpperInPlace(bytes);
}

function upperBytes(bytes: Uint8Array, start: number, end: number): void {
  for (let i = start; i < end; i++) {
    const b = bytes[i]!;
    // Unsigned compare: true exactly for 0x61..0x7a.
    if (((b - 0x61) >>> 0) < 26) bytes[i] = b - 0x20;
  }
}

function upperWords(words: Uint32Array): void {
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    const low7 = w & 0x7f7f7f7f;
    // Per byte, the top bit of `atLeastA` is set when low7 >= 0x61 and that of
    // `pastZ` when low7 >= 0x7b; no sum carries into the next byte.
    const atLeastA = low7 + 0x1f1f1f1f;
    const pastZ = low7 + 0x05050505;
    // A letter: at least 'a', not past 'z', and no top bit in the original.
    const letters = atLeastA & ~pastZ & ~w & 0x80808080;
    if (letters !== 0) words[i] = w ^ (letters >>> 2);
  }
}
