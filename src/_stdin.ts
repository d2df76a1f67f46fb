// Copyright the upcase authors. MIT license.
// The client's stdin, in chunks or in lines, in bounded memory. Internal.

import { concat } from "./_io.ts";

/** Bytes read from stdin at a time. */
export const STDIN_CHUNK_SIZE = 64 * 1024;

/** Reads stdin in chunks; each is valid until the next is asked for. */
export async function* stdinChunks(): AsyncGenerator<Uint8Array> {
  const buf = new Uint8Array(STDIN_CHUNK_SIZE);
  while (true) {
    const n = await Deno.stdin.read(buf);
    if (n === null) return;
    yield buf.subarray(0, n);
  }
}

/**
 * Splits stdin into lines, each with its newline (the last may lack it),
 * bytes as they are. A line longer than `maxLine` goes out in pieces of
 * `maxLine` bytes, so memory stays bounded whatever the input.
 *
 * @param maxLine The longest piece.
 */
export async function* stdinLines(
  maxLine = STDIN_CHUNK_SIZE,
): AsyncGenerator<Uint8Array> {
  let pending: Uint8Array = new Uint8Array(0);
  for await (const chunk of stdinChunks()) {
    let start = 0;
    while (start < chunk.length) {
      const newline = chunk.indexOf(0x0a, start);
      const end = newline === -1 ? chunk.length : newline + 1;
      const piece = chunk.subarray(start, end);
      pending = pending.length > 0 ? concat([pending, piece]) : piece.slice();
      start = end;
      while (pending.length > maxLine) {
        yield pending.subarray(0, maxLine);
        pending = pending.slice(maxLine);
      }
      if (newline !== -1) {
        yield pending;
        pending = new Uint8Array(0);
      }
    }
  }
  if (pending.length > 0) yield pending;
}
