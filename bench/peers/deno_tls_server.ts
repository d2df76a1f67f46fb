// deno_tls_server.ts: the plain Deno loop over TLS, for the benchmark (the
// deno-tls row): the runtime's floor for an upcase server on Deno.listenTls.
// Usage: deno run --allow-net=127.0.0.1:PORT --allow-read=CERT,KEY
//   bench/peers/deno_tls_server.ts PORT CERT KEY
//
// Listens on 127.0.0.1:PORT with the PEM certificate chain CERT and key KEY,
// prints "listening on 127.0.0.1:PORT" and serves each connection with
// deno_plain_server.ts's loop (_upcase_loop.ts: read 64 KiB -> uppercase ->
// write all, until read returns null at the client's close_notify; then
// close).

import { serveUpcase } from "./_upcase_loop.ts";

const [portArg, certFile, keyFile] = Deno.args;
const port = Number(portArg);
if (
  !Number.isInteger(port) || port < 0 || port > 65535 || !certFile || !keyFile
) {
  console.error("usage: deno_tls_server.ts PORT CERT KEY");
  Deno.exit(2);
}

const listener = Deno.listenTls({
  hostname: "127.0.0.1",
  port,
  cert: Deno.readTextFileSync(certFile),
  key: Deno.readTextFileSync(keyFile),
});
console.log(`listening on 127.0.0.1:${(listener.addr as Deno.NetAddr).port}`);
for (const sig of ["SIGTERM", "SIGINT"] as const) {
  Deno.addSignalListener(sig, () => Deno.exit(0));
}
// Deno.TlsConn has no setNoDelay(): the socket keeps Deno's default.
for await (const conn of listener) serveUpcase(conn);
