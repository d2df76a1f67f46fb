// Copyright the upcase authors. MIT license.
// --trace: one line per socket call, saying what it meant at the TCP level,
// in the words of the seed tutorial and with the matching call of its
// server.c and client.c. A traced connection is a wrapper of the Conn the
// per-connection code gets (as the TLS and PROXY layers are), so that code
// does not change and tracing off costs nothing. Internal.

import type { Conn } from "./_conn.ts";
import { escapeLine } from "./_escape.ts";

/** A socket-level event of one connection. */
export interface TraceEvent {
  /** The connection's number (the server's), or 0 on the client. */
  id: number;
  /** Which side traced it. */
  side: "server" | "client";
  /** The call, as the tutorial names it. */
  call:
    | "accept"
    | "proxy"
    | "handshake"
    | "connect"
    | "read"
    | "write"
    | "write-wait"
    | "eof"
    | "reset"
    | "error"
    | "shutdown"
    | "close"
    | "fault";
  /** The line, in words: what the call did and what TCP did. */
  text: string;
  /** Bytes read or written. */
  bytes?: number;
  /** The first bytes, escaped, when there are any. */
  preview?: string;
  /** The seed's matching C call, where there is one. */
  seed?: string;
}

/** The longest byte preview, in bytes. */
export const PREVIEW_BYTES = 32;
/** A write still pending after this long is reported as held back. */
const WRITE_WAIT_MS = 200;

/**
 * The first {@linkcode PREVIEW_BYTES} of `bytes` as a quoted string with
 * control and non-ASCII bytes escaped (`\n`, `\x00`), and `...` when cut.
 *
 * @param bytes The data.
 * @returns The preview.
 */
export function preview(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes.subarray(0, PREVIEW_BYTES)) {
    out += b === 0x0a
      ? "\\n"
      : b === 0x0d
      ? "\\r"
      : b === 0x09
      ? "\\t"
      : b === 0x22
      ? '\\"'
      : b === 0x5c
      ? "\\\\"
      : b >= 0x20 && b < 0x7f
      ? String.fromCharCode(b)
      : `\\x${b.toString(16).padStart(2, "0")}`;
  }
  return `"${out}"${bytes.length > PREVIEW_BYTES ? "..." : ""}`;
}

/**
 * One event; `seed` only when there is a matching C call.
 *
 * @returns The event.
 */
export function traceEvent(
  id: number,
  side: TraceEvent["side"],
  call: TraceEvent["call"],
  text: string,
  extra: Partial<TraceEvent>,
  seed: string | undefined,
): TraceEvent {
  return {
    id,
    side,
    call,
    text,
    ...extra,
    ...(seed === undefined ? {} : { seed }),
  };
}

/** `IP:PORT` or a socket path. */
function where(addr: Deno.Addr): string {
  if (!("hostname" in addr)) return "path" in addr ? addr.path : "?";
  return addr.hostname.includes(":")
    ? `[${addr.hostname}]:${addr.port}`
    : `${addr.hostname}:${addr.port}`;
}

function plural(n: number): string {
  return `${n} byte${n === 1 ? "" : "s"}`;
}

/** What the TLS or PROXY layer below a connection can say, if anything. */
interface Layered {
  /** TLS: set when the client's stream ended without close_notify. */
  readonly endedWithoutCloseNotify?: boolean;
  /** TLS: the connection speaks TLS. */
  readonly tls?: boolean;
  /** PROXY: the header, and the balancer's own address. */
  readonly header?: { version: 1 | 2; command: "proxy" | "local" };
  readonly proxiedBy?: Deno.Addr;
}

/**
 * The server's side of one connection, traced: each call the per-connection
 * code makes becomes a {@linkcode TraceEvent}.
 */
export class ServerTrace implements Conn {
  readonly remoteAddr: Deno.Addr;
  readonly localAddr: Deno.Addr;
  readonly healthCheck?: boolean;
  #conn: Conn & Layered;
  #id: number;
  #emit: (event: TraceEvent) => void;
  #sawEof = false;
  /** A read or write failed: the connection is gone, close() sends nothing. */
  #broken = false;
  #closed = false;
  #once: boolean;

  /**
   * Wraps `conn` and traces its accept (and its TLS handshake or PROXY
   * header, when a layer opened it).
   *
   * @param conn The connection the per-connection code would get.
   * @param id Its number.
   * @param once Whether the server closes after one read (--once).
   * @param emit Where the events go.
   */
  constructor(
    conn: Conn,
    id: number,
    once: boolean,
    emit: (event: TraceEvent) => void,
  ) {
    this.#conn = conn as Conn & Layered;
    this.#id = id;
    this.#emit = emit;
    this.#once = once;
    this.remoteAddr = conn.remoteAddr;
    this.localAddr = conn.localAddr;
    this.healthCheck = conn.healthCheck;
    const layered = this.#conn;
    if (layered.header !== undefined && layered.proxiedBy !== undefined) {
      this.#event(
        "proxy",
        `PROXY header (v${layered.header.version}${
          layered.header.command === "local" ? ", LOCAL: a health check" : ""
        }) from the balancer ${where(layered.proxiedBy)}: the client is ${
          where(conn.remoteAddr)
        }`,
      );
    }
    this.#event(
      "accept",
      `accept(): ${
        where(conn.remoteAddr)
      } connected (the kernel finished SYN, SYN-ACK, ACK before accept returned)`,
      {},
      "connfd = accept(listenfd, ...)",
    );
    if (layered.tls === true) {
      this.#event(
        "handshake",
        "TLS handshake done: ClientHello, ServerHello and the rest; from here on read() and write() carry decrypted bytes",
      );
    }
  }

  #event(
    call: TraceEvent["call"],
    text: string,
    extra: Partial<TraceEvent> = {},
    seed?: string,
  ): void {
    this.#emit(traceEvent(this.#id, "server", call, text, extra, seed));
  }

  async read(p: Uint8Array): Promise<number | null> {
    let n: number | null;
    try {
      n = await this.#conn.read(p);
    } catch (err: unknown) {
      this.#broken = true;
      if (err instanceof Deno.errors.ConnectionReset) {
        this.#event(
          "reset",
          "read() failed: ECONNRESET, the client sent RST (it closed with unread data, or SO_LINGER 0)",
        );
      } else {
        this.#event(
          "error",
          `read() failed: ${err instanceof Error ? err.message : err}`,
        );
      }
      throw err;
    }
    if (n === null && (this.#conn as { resetSent?: boolean }).resetSent) {
      this.#event(
        "eof",
        "read() ends: the reset fault ended the connection (no FIN came from the client)",
      );
      return n;
    }
    if (n === null) {
      this.#sawEof = true;
      this.#event(
        "eof",
        this.#conn.tls === true
          ? this.#conn.endedWithoutCloseNotify === true
            ? "read() = 0: EOF without close_notify: the client sent a bare FIN (TLS said nothing)"
            : "read() = 0: EOF: the client sent close_notify (TLS) and FIN"
          : "read() = 0: EOF, the client sent FIN (shutdown(SHUT_WR) or close())",
        {},
        "n = read(connfd, buf, MAXLINE) returns 0",
      );
      return n;
    }
    const shown = preview(p.subarray(0, n));
    this.#event(
      "read",
      `read() = ${plural(n)} ${shown}`,
      { bytes: n, preview: shown },
      "n = read(connfd, buf, MAXLINE)",
    );
    return n;
  }

  async write(p: Uint8Array): Promise<number> {
    let waiting = false;
    const timer = setTimeout(() => {
      waiting = true;
      this.#event(
        "write-wait",
        `write() waiting: the client is not reading, TCP flow control holds the server back (its receive window is full)`,
      );
    }, WRITE_WAIT_MS);
    try {
      let n: number;
      try {
        n = await this.#conn.write(p);
      } catch (err: unknown) {
        this.#broken = true;
        this.#event(
          err instanceof Deno.errors.ConnectionReset ? "reset" : "error",
          err instanceof Deno.errors.ConnectionReset
            ? "write() failed: ECONNRESET, the client sent RST (it closed with unread data)"
            : err instanceof Deno.errors.BrokenPipe
            ? "write() failed: EPIPE, the client is gone (it closed, then its kernel answered with RST)"
            : `write() failed: ${err instanceof Error ? err.message : err}`,
        );
        throw err;
      }
      const shown = preview(p.subarray(0, n));
      this.#event(
        "write",
        `write(${plural(n)}) ${shown}${
          waiting ? " (the client read again)" : ""
        }`,
        { bytes: n, preview: shown },
        "write(connfd, buf, n)",
      );
      return n;
    } finally {
      clearTimeout(timer);
    }
  }

  closeWrite(): Promise<void> {
    this.#event(
      "shutdown",
      "shutdown(SHUT_WR): FIN sent, the client's read() will return 0",
    );
    return this.#conn.closeWrite();
  }

  close(): void {
    // Again: the connection below may still be closing (a fault's queued
    // reply), and a second close cuts that short; else it throws.
    if (this.#closed) return this.#conn.close();
    this.#closed = true;
    this.#conn.close();
    this.#event(
      "close",
      this.#broken
        ? "close(): frees the socket; nothing is sent, the connection is gone already (reset)"
        : (this.#conn as { resetSent?: boolean }).resetSent === true
        ? "close(): frees the socket; no FIN: the reset fault sent an RST already"
        : this.#sawEof
        ? `close(): FIN sent, the connection is closed both ways${
          this.#conn.tls === true ? " (after close_notify)" : ""
        }`
        : this.#once
        ? "close() before EOF: FIN sent; if the client sent more than was read, the kernel answers with RST, not FIN"
        : "close(): the connection is closed both ways (FIN sent, or RST if unread data was left)",
      {},
      "close(connfd)",
    );
  }

  setNoDelay(noDelay?: boolean): void {
    this.#conn.setNoDelay?.(noDelay);
  }
}

/**
 * The client's side of one connection, traced to `emit` (the client CLI
 * writes the lines to stderr).
 */
export class ClientTrace implements Conn {
  readonly remoteAddr: Deno.Addr;
  readonly localAddr: Deno.Addr;
  #conn: Deno.Conn;
  #emit: (event: TraceEvent) => void;
  #closed = false;

  /**
   * Wraps a connected socket and traces the connect.
   *
   * @param conn The connected socket.
   * @param emit Where the events go.
   * @param tls Whether it speaks TLS (the handshake is done).
   */
  constructor(
    conn: Deno.Conn,
    emit: (event: TraceEvent) => void,
    tls = false,
  ) {
    this.#conn = conn;
    this.#emit = emit;
    this.remoteAddr = conn.remoteAddr;
    this.localAddr = conn.localAddr;
    this.#event(
      "connect",
      "hostname" in conn.localAddr
        ? `connect(): SYN sent, SYN-ACK received, connected from ${
          where(conn.localAddr)
        } to ${where(conn.remoteAddr)}`
        : `connect(): connected to ${where(conn.remoteAddr)}`,
      {},
      "connect(sockfd, ...)",
    );
    if (tls) {
      this.#event(
        "handshake",
        "TLS handshake done: the server's certificate was checked",
      );
    }
  }

  #event(
    call: TraceEvent["call"],
    text: string,
    extra: Partial<TraceEvent> = {},
    seed?: string,
  ): void {
    this.#emit(traceEvent(0, "client", call, text, extra, seed));
  }

  async read(p: Uint8Array): Promise<number | null> {
    let n: number | null;
    try {
      n = await this.#conn.read(p);
    } catch (err: unknown) {
      this.#event(
        err instanceof Deno.errors.ConnectionReset ? "reset" : "error",
        err instanceof Deno.errors.ConnectionReset
          ? "read() failed: ECONNRESET, the server sent RST"
          : `read() failed: ${err instanceof Error ? err.message : err}`,
      );
      throw err;
    }
    if (n === null) {
      this.#event(
        "eof",
        "read() = 0: the server closed its side (FIN)",
        {},
        "n = read(sockfd, buf, MAXLINE) returns 0",
      );
    } else {
      const shown = preview(p.subarray(0, n));
      this.#event(
        "read",
        `read() = ${plural(n)} ${shown}`,
        { bytes: n, preview: shown },
        "n = read(sockfd, buf, MAXLINE)",
      );
    }
    return n;
  }

  async write(p: Uint8Array): Promise<number> {
    const n = await this.#conn.write(p);
    const shown = preview(p.subarray(0, n));
    this.#event(
      "write",
      `write(${plural(n)}) ${shown}`,
      { bytes: n, preview: shown },
      "write(sockfd, str, strlen(str))",
    );
    return n;
  }

  async closeWrite(): Promise<void> {
    await this.#conn.closeWrite();
    this.#event(
      "shutdown",
      "shutdown(SHUT_WR): FIN sent, the server's read() will return 0",
    );
  }

  close(): void {
    if (this.#closed) throw new Deno.errors.BadResource("Already closed");
    this.#closed = true;
    this.#conn.close();
    this.#event(
      "close",
      "close(): the connection is closed both ways",
      {},
      "close(sockfd)",
    );
  }
}

/**
 * A trace event as one text line: `[3] read() = 12 bytes "hello"  (server.c: ...)`.
 *
 * @param event The event.
 * @returns The line.
 */
export function formatTrace(event: TraceEvent): string {
  const who = event.side === "server" ? `[${event.id}] ` : "";
  const seed = event.seed === undefined
    ? ""
    : `  (${event.side}.c: ${event.seed})`;
  return escapeLine(`${who}${event.text}${seed}`);
}
