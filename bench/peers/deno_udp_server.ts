// deno_udp_server.ts: the plain Deno.listenDatagram loop, for the benchmark
// (the deno-udp row): the runtime's floor for an upcase UDP server.
// Usage: deno run --allow-net=127.0.0.1 bench/peers/deno_udp_server.ts PORT
//
// Binds 127.0.0.1:PORT (0 picks a free port; Deno.listenDatagram needs
// --unstable-net, which deno.json sets), prints
// "listening on 127.0.0.1:PORT", then one datagram at a time: receive into
// a 64 KiB buffer (larger than any UDP payload, so none is cut) ->
// uppercase byte by byte -> send it back to its source, awaited before the
// next receive (the buffer is reused). --allow-net names the host only:
// Deno checks the destination of every datagram sent, and the clients'
// ports are any.

const port = Number(Deno.args[0]);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error("usage: deno_udp_server.ts PORT");
  Deno.exit(2);
}

const socket = Deno.listenDatagram({
  transport: "udp",
  hostname: "127.0.0.1",
  port,
});
console.log(`listening on 127.0.0.1:${(socket.addr as Deno.NetAddr).port}`);
for (const sig of ["SIGTERM", "SIGINT"] as const) {
  Deno.addSignalListener(sig, () => Deno.exit(0));
}
const buf = new Uint8Array(64 * 1024);
while (true) {
  const [data, from] = await socket.receive(buf);
  for (let i = 0; i < data.length; i++) {
    const b = data[i]!;
    if (b >= 0x61 && b <= 0x7a) data[i] = b - 0x20;
  }
  try {
    await socket.send(data, from);
  } catch {
    // Refused and the like: the datagram is dropped, as UDP does.
  }
}
