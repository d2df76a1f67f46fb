// _upcase_loop.ts: the plain Deno read/write loop of one connection, for
// the benchmark's Deno peers (deno_plain_server.ts over TCP,
// deno_tls_server.ts over TLS).

/**
 * Serves one connection: read (64 KiB) -> uppercase byte by byte -> write
 * all, until read returns null (the client's FIN, or its close_notify over
 * TLS: every reply is written by then); then closes it.
 *
 * @param conn The connection; closed when this returns.
 */
export async function serveUpcase(conn: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  try {
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      for (let i = 0; i < n; i++) {
        const b = buf[i]!;
        if (b >= 0x61 && b <= 0x7a) buf[i] = b - 0x20;
      }
      let off = 0;
      while (off < n) off += await conn.write(buf.subarray(off, n));
    }
  } catch {
    // reset by peer, a failed TLS handshake and the like: just close
  } finally {
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
}
