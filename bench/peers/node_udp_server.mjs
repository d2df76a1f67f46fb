// node_udp_server.mjs: an upcase UDP server as a Node.js user would write
// it, for the benchmark (the node-udp row).
// Usage: node bench/peers/node_udp_server.mjs PORT
//
// Binds 127.0.0.1:PORT (0 picks a free port), prints
// "listening on 127.0.0.1:PORT", serves until SIGTERM or SIGINT: a
// dgram.createSocket("udp4") 'message' handler that sends each datagram
// back upper-cased (_upcase_dgram.mjs, which deno_node_udp_server.ts runs
// under Deno).
import dgram from "node:dgram";
import { serveUpcaseDatagrams } from "./_upcase_dgram.mjs";

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error("usage: node node_udp_server.mjs PORT");
  process.exit(2);
}

serveUpcaseDatagrams(dgram, port, (bound) => {
  console.log(`listening on 127.0.0.1:${bound}`);
});

for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => process.exit(0));
}
