// Copyright the upcase authors. MIT license.
// Small I/O helpers shared by the server and the client. Internal.

/** Anything with Deno's `write` contract: a socket, `Deno.stdout`, a file. */
export interface Writer {
  write(bytes: Uint8Array): Promise<number>;
}

/**
 * Writes every byte of `bytes` to `writer`, however many writes it takes.
 *
 * @param writer Where to write.
 * @param bytes What to write.
 */
export async function writeAll(
  writer: Writer,
  bytes: Uint8Array,
): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    written += await writer.write(bytes.subarray(written));
  }
}

/**
 * Closes `conn` unless it is closed already.
 *
 * @param conn The connection to close.
 */
export function closeQuietly(conn: { close(): void }): void {
  try {
    conn.close();
  } catch (err: unknown) {
    if (!(err instanceof Deno.errors.BadResource)) throw err;
  }
}

/**
 * One line for an error: its message, without Deno's `(os error N)` suffix.
 *
 * @param err Anything thrown.
 * @returns A short description.
 */
export function errorMessage(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.replace(/ \(os error \d+\)$/, "");
}

/**
 * Whether `err` is what a socket throws once its peer reset it or stopped
 * taking bytes: the peer went away.
 *
 * @param err What a read or write threw.
 * @returns True for a reset, a broken pipe or a socket no longer connected.
 */
export function isPeerGone(err: unknown): boolean {
  return err instanceof Deno.errors.ConnectionReset ||
    err instanceof Deno.errors.BrokenPipe ||
    err instanceof Deno.errors.NotConnected;
}

/**
 * Resolves after `ms` milliseconds, or at once when `signal` is aborted (or
 * `ms` is not positive).
 *
 * @param ms How long to wait.
 * @param signal Ends the wait early.
 * @returns A promise that resolves (never rejects).
 */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * The bytes of `chunks`, one after the other, in one new array.
 *
 * @param chunks The pieces.
 * @returns Their concatenation.
 */
export function concat(chunks: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const chunk of chunks) length += chunk.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}
