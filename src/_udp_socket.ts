// Copyright the upcase authors. MIT license.
// A UDP client's socket: where its datagrams go, the address it binds, and
// receiving with a time limit. Internal.

/**
 * The server's address to send to, and the address the client's socket
 * binds: the server's own loopback address (so `--allow-net=127.0.0.1` is
 * enough: Deno checks the bind too), else the wildcard of its family.
 *
 * @param hostname The server's host, as given.
 * @returns Both addresses.
 */
export function udpAddresses(hostname: string): { send: string; bind: string } {
  const send = hostname === "localhost" ? "127.0.0.1" : hostname;
  if (/^127\./.test(send) || send === "::1") return { send, bind: send };
  return { send, bind: send.includes(":") ? "::" : "0.0.0.0" };
}

/**
 * Receives datagrams with a time limit. `receive()` cannot be cancelled, so
 * one that runs out of time is kept for the next call rather than left to
 * write into the buffer behind the caller's back.
 */
export class Receiver {
  #socket: Deno.DatagramConn;
  #buffer: Uint8Array;
  #pending: Promise<[Uint8Array, Deno.Addr]> | undefined;

  /**
   * @param socket The socket to receive on.
   * @param bytes The receive buffer's size: more than the longest datagram
   *   expected (a longer one is cut silently).
   */
  constructor(socket: Deno.DatagramConn, bytes: number) {
    this.#socket = socket;
    this.#buffer = new Uint8Array(bytes);
  }

  /**
   * The next datagram within `ms`, or undefined.
   *
   * @param ms The time limit.
   * @returns The datagram (a view valid until the next call) and its source.
   */
  async next(ms: number): Promise<[Uint8Array, Deno.NetAddr] | undefined> {
    this.#pending ??= this.#socket.receive(this.#buffer);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const result = await Promise.race([
      this.#pending,
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), Math.max(0, ms));
      }),
    ]);
    clearTimeout(timer);
    if (result === undefined) return undefined;
    this.#pending = undefined;
    return [result[0], result[1] as Deno.NetAddr];
  }

  /** Closes the socket; a receive still pending ends quietly. */
  close(): void {
    this.#socket.close();
    this.#pending?.catch(() => {});
  }
}
