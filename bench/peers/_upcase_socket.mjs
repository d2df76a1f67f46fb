// _upcase_socket.mjs: how a Node.js user serves one upcase connection, for
// the benchmark's Node peers (node_server.mjs over net, node_tls_server.mjs
// over tls).
//
// 'data' handler, uppercase the chunk, socket.write; when write() returns
// false, pause reading until 'drain' (backpressure). The server is created
// with allowHalfOpen, so the reply can finish after the client's FIN (or
// its close_notify over TLS: both end the readable side, 'end'); then
// socket.end() (over TLS: our close_notify, then the close).

function upcase(buf) {
  for (let i = 0; i < buf.length; i++) {
    const b = buf[i];
    if (b >= 0x61 && b <= 0x7a) buf[i] = b - 0x20;
  }
  return buf;
}

/** Serves one connection of a net or tls server made with allowHalfOpen. */
export function serveUpcase(socket) {
  socket.setNoDelay(true);
  socket.on("data", (chunk) => {
    if (!socket.write(upcase(chunk))) {
      socket.pause();
      socket.once("drain", () => socket.resume());
    }
  });
  socket.on("end", () => socket.end());
  socket.on("error", () => socket.destroy());
}
