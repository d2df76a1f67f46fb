// Copyright the upcase authors. MIT license.
/**
 * Text from a peer made safe for a line of a log or a terminal. Internal.
 *
 * @module
 */

/**
 * What may not reach a log line as it is: C0 controls (a newline forges a
 * line, ESC drives the terminal), DEL, C1 controls, the Unicode line and
 * paragraph separators, and the bidirectional controls that reorder what a
 * reader sees.
 */
const UNSAFE = // deno-lint-ignore no-control-regex -- these are the point
  /[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * `text` as one printable line: each control, separator or bidirectional
 * control character written as `\xNN` (up to U+00FF) or `\u{NNNN}`. Text
 * that has none comes back as it is, so escaping twice changes nothing.
 *
 * @param text Text that may hold a peer's bytes.
 * @returns The text, safe to print as one line.
 *
 * @example Usage
 * ```ts
 * import { escapeLine } from "./_escape.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(escapeLine("a\nb\x1b[2J"), "a\\x0ab\\x1b[2J");
 * assertEquals(escapeLine(escapeLine("\u202e")), "\\u{202e}");
 * ```
 */
export function escapeLine(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff
      ? `\\x${code.toString(16).padStart(2, "0")}`
      : `\\u{${code.toString(16)}}`;
  });
}
