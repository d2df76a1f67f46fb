// _upcase_dgram.mjs: how a Node.js user answers upcase datagrams, for the
// benchmark's node:dgram peers (node_udp_server.mjs under Node,
// deno_node_udp_server.ts under Deno's Node compatibility).
//
// A 'message' handler: uppercase the datagram's Buffer in place and
// socket.send() it back to the address and port it came from. A send that
// fails is dropped, as UDP does ('error' is only counted, never fatal).

function upcase(buf) {
  for (let i = 0; i < buf.length; i++) {
    const b = buf[i];
    if (b >= 0x61 && b <= 0x7a) buf[i] = b - 0x20;
  }
  return buf;
}

/**
 * Binds a dgram socket to 127.0.0.1:port and answers every datagram; calls
 * `onListening(port)` once it is bound.
 */
export function serveUpcaseDatagrams(dgram, port, onListening) {
  const socket = dgram.createSocket("udp4");
  socket.on("message", (msg, rinfo) => {
    socket.send(upcase(msg), rinfo.port, rinfo.address);
  });
  socket.on("error", () => {});
  socket.bind(port, "127.0.0.1", () => onListening(socket.address().port));
  return socket;
}
