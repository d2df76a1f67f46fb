// node_server.mjs: an upcase server as a Node.js user would write it, for the
// benchmark. Usage: node bench/peers/node_server.mjs PORT
//
// Listens on 127.0.0.1:PORT (0 picks a free port), prints
// "listening on 127.0.0.1:PORT", serves until SIGTERM or SIGINT.
// Each connection: _upcase_socket.mjs ('data' handler, uppercase the chunk,
// socket.write; when write() returns false, pause reading until 'drain').
// allowHalfOpen so the reply can finish after the client's FIN;
// socket.end() on 'end'.
import net from "node:net";
import { serveUpcase } from "./_upcase_socket.mjs";

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error("usage: node node_server.mjs PORT");
  process.exit(2);
}

const server = net.createServer({ allowHalfOpen: true }, serveUpcase);

server.listen(port, "127.0.0.1", () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});

for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => process.exit(0));
}
