// deno_node_udp_server.ts: node_udp_server.mjs's server under Deno, through
// its Node compatibility's node:dgram, for the benchmark (the deno-node-udp
// row): what upcase would get from node:dgram, which needs no
// --unstable-net, against Deno.listenDatagram (deno_udp_server.ts), which
// does.
// Usage: deno run --allow-net=127.0.0.1 bench/peers/deno_node_udp_server.ts PORT
//
// Binds 127.0.0.1:PORT (0 picks a free port), prints
// "listening on 127.0.0.1:PORT" and answers each datagram with
// _upcase_dgram.mjs's 'message' handler (uppercase the Buffer in place,
// socket.send() it back). --allow-net names the host only: Deno checks the
// destination of every datagram sent, and the clients' ports are any.

import dgram from "node:dgram";
import { serveUpcaseDatagrams } from "./_upcase_dgram.mjs";

const port = Number(Deno.args[0]);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error("usage: deno_node_udp_server.ts PORT");
  Deno.exit(2);
}

serveUpcaseDatagrams(dgram, port, (bound: number) => {
  console.log(`listening on 127.0.0.1:${bound}`);
});
for (const sig of ["SIGTERM", "SIGINT"] as const) {
  Deno.addSignalListener(sig, () => Deno.exit(0));
}
