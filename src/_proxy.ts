// Copyright the upcase authors. MIT license.
// The PROXY-protocol layer of the accept path (the socket part of
// _proxy_header.ts, after Go's go-proxyproto listener): each accepted
// connection must start with a header; the server then sees a connection
// whose remoteAddr is the client the header names and whose first reads
// return the request bytes that came in the header's reads. Peers outside
// --proxy-from are closed unanswered. Internal.

import type { Conn, ConnLayer } from "./_conn.ts";
import { closeQuietly } from "./_io.ts";
import { type ProxyHeader, ProxyHeaderParser } from "./_proxy_header.ts";
import { type Cidr, inCidrs } from "./_cidr.ts";

/** Options of {@linkcode proxyLayer}. */
export interface ProxyLayerOptions {
  /** Close a connection whose header is not complete by then, in ms. */
  timeout: number;
  /** Only peers in these ranges may connect; empty: any peer. */
  from: readonly Cidr[];
}

/** The reads the header arrives in. */
const HEADER_READ_SIZE = 512;

/**
 * A connection after its PROXY header: the header's addresses, and the
 * request bytes that arrived with the header first.
 */
class ProxiedConn implements Conn {
  readonly remoteAddr: Deno.Addr;
  readonly localAddr: Deno.Addr;
  /** A proxy's own connection (v2 LOCAL): a health check. */
  readonly healthCheck: boolean;
  /** What the header said, for the trace. */
  readonly header: ProxyHeader;
  /** The balancer's own address (the socket's peer), for the trace. */
  readonly proxiedBy: Deno.Addr;
  /** The socket's own local address (the header may name another). */
  readonly socketLocalAddr: Deno.Addr;
  #conn: Conn;
  #rest: Uint8Array | undefined;

  constructor(conn: Conn, header: ProxyHeader, rest: Uint8Array) {
    this.#conn = conn;
    this.header = header;
    this.proxiedBy = conn.remoteAddr;
    this.socketLocalAddr = conn.localAddr;
    this.remoteAddr = header.source ?? conn.remoteAddr;
    this.localAddr = header.destination ?? conn.localAddr;
    this.healthCheck = header.command === "local";
    this.#rest = rest.length > 0 ? rest : undefined;
  }

  read(p: Uint8Array): Promise<number | null> {
    const rest = this.#rest;
    if (rest === undefined) return this.#conn.read(p);
    const n = Math.min(p.length, rest.length);
    p.set(rest.subarray(0, n));
    this.#rest = n < rest.length ? rest.subarray(n) : undefined;
    return Promise.resolve(n);
  }

  write(p: Uint8Array): Promise<number> {
    return this.#conn.write(p);
  }

  closeWrite(): Promise<void> {
    return this.#conn.closeWrite();
  }

  close(): void {
    this.#conn.close();
  }

  setNoDelay(noDelay?: boolean): void {
    this.#conn.setNoDelay?.(noDelay);
  }
}

/**
 * The PROXY layer: reads and checks the header of each new connection
 * within `options.timeout`.
 *
 * @param options The deadline and the allowed peers.
 * @returns The layer.
 */
export function proxyLayer(options: ProxyLayerOptions): ConnLayer {
  return {
    step: "proxy",
    async open(conn: Conn): Promise<Conn> {
      const peer = conn.remoteAddr;
      if (
        options.from.length > 0 &&
        !("hostname" in peer && inCidrs(peer.hostname, options.from))
      ) {
        closeQuietly(conn);
        throw new Error(
          `${
            "hostname" in peer ? peer.hostname : "the peer"
          } is not in --proxy-from: closed unanswered`,
        );
      }
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        closeQuietly(conn);
      }, options.timeout);
      const parser = new ProxyHeaderParser();
      const buf = new Uint8Array(HEADER_READ_SIZE);
      let received = 0;
      try {
        while (true) {
          let n: number | null;
          try {
            n = await conn.read(buf);
          } catch (err: unknown) {
            if (timedOut) {
              throw new Error(
                `no PROXY header within ${
                  options.timeout / 1000
                } s (--proxy-timeout)`,
              );
            }
            // A reset before any byte: a balancer's check (the kernel drops
            // the unread header with the RST); after some, a broken header.
            if (err instanceof Deno.errors.ConnectionReset && received === 0) {
              throw new HeaderAborted(
                "the client reset the connection before sending anything",
              );
            }
            throw err;
          }
          if (n === null) {
            if (received === 0) {
              throw new HeaderAborted(
                "the client closed the connection without sending anything",
              );
            }
            throw new Error(
              "the client closed the connection before the PROXY header was complete",
            );
          }
          received += n;
          const result = parser.push(buf.subarray(0, n));
          if (result.status === "failed") throw new Error(result.reason);
          if (result.status === "done") {
            return new ProxiedConn(conn, result.header, result.rest);
          }
        }
      } catch (err: unknown) {
        closeQuietly(conn);
        throw err;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/**
 * Two layers in turn: the PROXY header, then the TLS handshake.
 *
 * @param first The outer one (on the accepted connection).
 * @param second The inner one (on what the first hands on).
 * @returns One layer; a failure names the step that failed.
 */
export function chainLayers(first: ConnLayer, second: ConnLayer): ConnLayer {
  return {
    step: first.step,
    async open(conn: Conn): Promise<Conn> {
      const opened = await first.open(conn);
      try {
        return await second.open(opened);
      } catch (err: unknown) {
        throw new LayerError(second.step, err);
      }
    },
  };
}

/**
 * A connection that ended (reset, or closed having sent nothing) before its
 * PROXY header was complete: what a balancer's health check or an aborted
 * connect looks like (HAProxy's checks end with an RST unless `linger` is
 * set), so the server counts it as a check, not as a bad header.
 */
export class HeaderAborted extends Error {
  /** @param message What happened, in words. */
  constructor(message: string) {
    super(message);
    this.name = "HeaderAborted";
  }
}

/** A failure of the inner layer of {@linkcode chainLayers}. */
export class LayerError extends Error {
  /** Which step failed. */
  readonly step: "tls" | "proxy";

  /**
   * @param step The step.
   * @param cause What it threw.
   */
  constructor(step: "tls" | "proxy", cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.name = "LayerError";
    this.step = step;
  }
}
