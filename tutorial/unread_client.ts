// A Deno client that closes its connection with the reply still unread: it
// sends "hello", gives the reply time to arrive, and calls close() without
// reading it. The kernel answers unread data at close() with RST, but
// Deno's close() shuts the write half down (FIN) first, so the server's
// read() returns 0 before the RST comes.
//
//   deno run --allow-net=127.0.0.1:6666 tutorial/unread_client.ts

const conn = await Deno.connect({ hostname: "127.0.0.1", port: 6666 });
await conn.write(new TextEncoder().encode("hello"));
await new Promise((resolve) => setTimeout(resolve, 500)); // "HELLO" arrives
conn.close();
console.log("closed with the reply unread");
