// deno_plain_server.ts: the plain Deno loop, for the benchmark.
// Usage: deno run --allow-net=127.0.0.1:PORT bench/peers/deno_plain_server.ts PORT
//
// Listens on 127.0.0.1:PORT, prints "listening on 127.0.0.1:PORT" and serves
// each connection with read (64 KiB) -> uppercase byte by byte -> write all,
// until read returns null; then closes.

const port = Number(Deno.args[0]);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error("usage: deno_plain_server.ts PORT");
  Deno.exit(2);
}

async function handle(conn: Deno.Conn): Promise<void> {
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
    // reset by peer and the like: just close
  } finally {
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
}

const listener = Deno.listen({ hostname: "127.0.0.1", port });
console.log(`listening on 127.0.0.1:${(listener.addr as Deno.NetAddr).port}`);
for (const sig of ["SIGTERM", "SIGINT"] as const) {
  Deno.addSignalListener(sig, () => Deno.exit(0));
}
for await (const conn of listener) {
  conn.setNoDelay(true);
  handle(conn);
}
