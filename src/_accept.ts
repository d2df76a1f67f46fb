// Copyright the upcase authors. MIT license.
// What every accept loop of the server shares (the service port, the relay,
// the HTTP side channel): which accept failures are one client's alone, and
// how long to wait after one that is not. Internal.

/**
 * Whether an accept failed only because that client had already reset (its
 * connection is gone from the queue; the next one is fine): nothing to log,
 * nothing to wait for. HAProxy's checks and aborted connects do this.
 *
 * @param err What accept() threw.
 * @returns True for a reset, an abort or a disconnect of that client.
 */
export function resetBeforeAccept(err: unknown): boolean {
  return err instanceof Deno.errors.NotConnected ||
    err instanceof Deno.errors.ConnectionReset ||
    err instanceof Deno.errors.ConnectionAborted;
}

/** The longest pause between two failed accepts, in milliseconds. */
export const MAX_ACCEPT_BACKOFF_MS = 1000;

/**
 * The pause after an accept that failed for the listener (EMFILE, ENFILE,
 * ENOBUFS): 5 ms, then twice the last, up to {@linkcode MAX_ACCEPT_BACKOFF_MS};
 * a successful accept starts again from 0.
 *
 * @param last The last pause, 0 after a success.
 * @returns The next pause in milliseconds.
 */
export function nextAcceptBackoff(last: number): number {
  return Math.min(last === 0 ? 5 : last * 2, MAX_ACCEPT_BACKOFF_MS);
}
