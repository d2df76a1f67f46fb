// deno_plain_server.ts: the plain Deno loop, for the benchmark.
// Usage: deno run --allow-net=127.0.0.1:PORT bench/peers/deno_plain_server.ts PORT
//
// Listens on 127.0.0.1:PORT, prints "listening on 127.0.0.1:PORT" and serves
// each connection with read (64 KiB) -> uppercase byte by byte -> write all,
// until read returns null; then closes (_upcase_loop.ts).

import { serveUpcase } from "./_upcase_loop.ts";

const port = Number(Deno.args[0]);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error("usage: deno_plain_server.ts PORT");
  Deno.exit(2);
}

const listener = Deno.listen({ hostname: "127.0.0.1", port });
console.log(`listening on 127.0.0.1:${(listener.addr as Deno.NetAddr).port}`);
for (const sig of ["SIGTERM", "SIGINT"] as const) {
  Deno.addSignalListener(sig, () => Deno.exit(0));
}
for await (const conn of listener) {
  conn.setNoDelay(true);
  serveUpcase(conn);
}
