// node_tls_server.mjs: an upcase server over TLS as a Node.js user would
// write it, for the benchmark (the node-tls row).
// Usage: node bench/peers/node_tls_server.mjs PORT CERT KEY
//
// Listens on 127.0.0.1:PORT (0 picks a free port) with the PEM certificate
// chain CERT and key KEY, prints "listening on 127.0.0.1:PORT", serves until
// SIGTERM or SIGINT. tls.createServer with node_server.mjs's handler
// (_upcase_socket.mjs: write, pause until 'drain' when write() returns
// false). allowHalfOpen, so the reply can finish after the client's
// close_notify (which ends the readable side: 'end'); then socket.end()
// sends ours and closes.
import { readFileSync } from "node:fs";
import tls from "node:tls";
import { serveUpcase } from "./_upcase_socket.mjs";

const [portArg, certFile, keyFile] = process.argv.slice(2);
const port = Number(portArg);
if (
  !Number.isInteger(port) || port < 0 || port > 65535 || !certFile || !keyFile
) {
  console.error("usage: node node_tls_server.mjs PORT CERT KEY");
  process.exit(2);
}

const server = tls.createServer({
  cert: readFileSync(certFile),
  key: readFileSync(keyFile),
  allowHalfOpen: true,
}, serveUpcase);
// A failed handshake is the client's problem; the server goes on.
server.on("tlsClientError", () => {});

server.listen(port, "127.0.0.1", () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});

for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => process.exit(0));
}
