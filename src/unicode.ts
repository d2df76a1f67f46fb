// Copyright the upcase authors. MIT license.
/**
 * Unicode upper-casing of a UTF-8 byte stream, for `serve({ unicode: true })`
 * and `server.ts --unicode`.
 *
 * Valid UTF-8 is upper-cased with the Unicode default case mapping
 * (`String.prototype.toUpperCase`, so `"straße"` becomes `"STRASSE"` and the
 * output may be longer than the input). A character split across chunks is
 * held back until its last byte arrives. Bytes that are not valid UTF-8 are
 * passed through unchanged, one by one: nothing is dropped or replaced, and an
 * input that is not text at all comes back as the ASCII transform would give
 * it for its ASCII bytes.
 *
 * @module
 */

import { concat } from "./_io.ts";

/**
 * The most bytes one input byte can become: U+0390 (2 bytes) upper-cases to
 * three 2-byte code points.
 */
const MAX_EXPANSION = 3;

/**
 * Shared by every caser: each decode is of whole characters, so no state is
 * kept between calls. ignoreBOM: a U+FEFF that starts a run is text like any
 * other, not a byte order mark to strip.
 */
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
const encoder = new TextEncoder();

/**
 * Upper-cases a UTF-8 stream chunk by chunk. One per connection: it keeps the
 * bytes of a character that a chunk boundary split.
 *
 * @example Usage
 * ```ts
 * import { UnicodeUpperCaser } from "@upcase/upcase";
 * import { assertEquals } from "@std/assert";
 *
 * const bytes = new TextEncoder().encode("straße");
 * const upper = new UnicodeUpperCaser();
 * // "ß" is 0xc3 0x9f; split it between two chunks.
 * const a = upper.push(bytes.subarray(0, 5));
 * const b = upper.push(bytes.subarray(5));
 * const rest = upper.flush();
 * const text = new TextDecoder().decode(new Uint8Array([...a, ...b, ...rest]));
 * assertEquals(text, "STRASSE");
 * ```
 */
export class UnicodeUpperCaser {
  /** The start of a character whose remaining bytes have not arrived. */
  #pending = new Uint8Array(0);

  /**
   * Upper-cases the next chunk of the stream.
   *
   * @param chunk The next bytes; not modified, and not kept after the call.
   * @returns The upper-cased bytes, in a new array, ready to send. A split
   *   character at the end of `chunk` is kept for the next call.
   */
  push(chunk: Uint8Array): Uint8Array {
    const input = this.#pending.length === 0
      ? chunk
      : concat([this.#pending, chunk]);
    const out = new Uint8Array(input.length * MAX_EXPANSION);
    let written = 0;
    let i = 0;
    while (i < input.length) {
      const end = validPrefixEnd(input, i);
      if (end > i) {
        const upper = decoder.decode(input.subarray(i, end))
          .toUpperCase();
        written += encoder.encodeInto(upper, out.subarray(written))
          .written;
        i = end;
        continue;
      }
      if (isIncomplete(input, i)) break;
      out[written++] = input[i++]!; // not UTF-8: passed through unchanged
    }
    this.#pending = input.slice(i);
    return out.subarray(0, written);
  }

  /**
   * Ends the stream.
   *
   * @returns The bytes of a character that never got its last bytes,
   *   unchanged (empty when the stream ended on a whole character).
   */
  flush(): Uint8Array {
    const rest = this.#pending;
    this.#pending = new Uint8Array(0);
    return rest;
  }
}

/**
 * Upper-cases UTF-8 text as Unicode; invalid bytes pass through unchanged.
 * See {@linkcode UnicodeUpperCaser} for streams.
 *
 * @param input UTF-8 bytes, or a string.
 * @returns The upper-cased UTF-8 bytes; may be longer than the input.
 *
 * @example Usage
 * ```ts
 * import { toUpperUnicode } from "@upcase/upcase";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(
 *   new TextDecoder().decode(toUpperUnicode("héllo, straße")),
 *   "HÉLLO, STRASSE",
 * );
 * ```
 */
export function toUpperUnicode(input: Uint8Array | string): Uint8Array {
  const bytes = typeof input === "string"
    ? new TextEncoder().encode(input)
    : input;
  const upper = new UnicodeUpperCaser();
  return concat([upper.push(bytes), upper.flush()]);
}

/**
 * The end of the run of well-formed UTF-8 (Unicode Table 3-7) starting at
 * `start`: `start` itself when the byte there does not begin a whole
 * character.
 */
function validPrefixEnd(bytes: Uint8Array, start: number): number {
  let i = start;
  const n = bytes.length;
  while (i < n) {
    const b = bytes[i]!;
    if (b < 0x80) {
      i++;
      continue;
    }
    const length = sequenceLength(bytes, i);
    if (length <= 0) break;
    i += length;
  }
  return i;
}

/**
 * The length of the well-formed character at `i`; 0 when the bytes there are
 * not one, -1 when they are the start of one cut off by the end of `bytes`.
 */
function sequenceLength(bytes: Uint8Array, i: number): number {
  const b = bytes[i]!;
  let length: number;
  let low = 0x80;
  let high = 0xbf;
  if (b >= 0xc2 && b <= 0xdf) length = 2;
  else if (b >= 0xe0 && b <= 0xef) {
    length = 3;
    if (b === 0xe0) low = 0xa0;
    else if (b === 0xed) high = 0x9f;
  } else if (b >= 0xf0 && b <= 0xf4) {
    length = 4;
    if (b === 0xf0) low = 0x90;
    else if (b === 0xf4) high = 0x8f;
  } else return 0;
  for (let k = 1; k < length; k++) {
    if (i + k >= bytes.length) return -1;
    const c = bytes[i + k]!;
    if (c < (k === 1 ? low : 0x80) || c > (k === 1 ? high : 0xbf)) return 0;
  }
  return length;
}

/** Whether the bytes at `i` begin a character cut off by the end. */
function isIncomplete(bytes: Uint8Array, i: number): boolean {
  return sequenceLength(bytes, i) === -1;
}
