// Copyright the upcase authors. MIT license.
import {
  assert,
  assertEquals,
  assertGreater,
  assertRejects,
} from "@std/assert";
import { MAXLINE, serve, type ServerEvent } from "../mod.ts";
import {
  assertSameBytes,
  expectedUpper,
  randomBytes,
  readToEnd,
  roundTrip,
  text,
  utf8,
  writeAll,
} from "./_util.ts";
import { delay, waitUntil } from "../stress/_util.ts";

const LOOPBACK = { hostname: "127.0.0.1", port: 0 };

Deno.test("serve() answers 100 concurrent clients with random binary payloads of 0 B to 1 MiB, byte for byte", async () => {
  await using server = serve(LOOPBACK);
  const sizes = Array.from(
    { length: 100 },
    (_, i) =>
      i === 0 ? 0 : i === 1 ? 1 << 20 : Math.floor(Math.random() * (1 << 20)),
  );
  await Promise.all(sizes.map(async (size, i) => {
    const payload = randomBytes(size);
    const reply = await roundTrip(server.addr.port, payload);
    assertSameBytes(reply, expectedUpper(payload), `client ${i} (${size} B)`);
  }));
  const stats = server.stats;
  assertEquals(stats.accepted, 100);
  const total = sizes.reduce((a, b) => a + b, 0);
  assertEquals(stats.bytesIn, total);
  assertEquals(stats.bytesOut, total);
  assertEquals(stats.errors, 0);
});

Deno.test("serve() streams a client that sends in many small writes with pauses", async () => {
  await using server = serve(LOOPBACK);
  using conn = await Deno.connect({
    port: server.addr.port,
    hostname: "127.0.0.1",
  });
  const payload = utf8(
    "the quick brown fox jumps over the lazy dog. ".repeat(20),
  );
  const replyPromise = readToEnd(conn);
  for (let i = 0; i < payload.length; i += 7) {
    await writeAll(conn, payload.subarray(i, i + 7));
    if (i % 70 === 0) await delay(5);
  }
  await conn.closeWrite();
  assertSameBytes(await replyPromise, expectedUpper(payload));
});

Deno.test("serve() replies to each piece as it arrives, before the client half-closes", async () => {
  await using server = serve(LOOPBACK);
  using conn = await Deno.connect({
    port: server.addr.port,
    hostname: "127.0.0.1",
  });
  const buf = new Uint8Array(100);
  for (const word of ["first", "second", "third"]) {
    await writeAll(conn, utf8(word));
    let got = "";
    while (got.length < word.length) {
      const n = await conn.read(buf);
      if (n === null) throw new Error("server closed early");
      got += text(buf.subarray(0, n));
    }
    assertEquals(got, word.toUpperCase());
  }
  await conn.closeWrite();
  assertEquals(await conn.read(buf), null, "server closes after half-close");
});

Deno.test("serve() finishes writing the reply after the client half-closes", async () => {
  await using server = serve(LOOPBACK);
  using conn = await Deno.connect({
    port: server.addr.port,
    hostname: "127.0.0.1",
  });
  // Send everything and half-close before reading a single byte: the reply
  // (4 MiB, more than the socket buffers hold) must still arrive whole.
  const payload = randomBytes(4 << 20);
  const sending = writeAll(conn, payload).then(() => conn.closeWrite());
  await delay(50);
  const reply = await readToEnd(conn);
  await sending;
  assertSameBytes(reply, expectedUpper(payload));
});

Deno.test("serve() streams 64 MiB through one connection without losing a byte", async () => {
  await using server = serve(LOOPBACK);
  using conn = await Deno.connect({
    port: server.addr.port,
    hostname: "127.0.0.1",
  });
  const block = randomBytes(1 << 20);
  const expectedBlock = expectedUpper(block);
  const blocks = 64;
  const sending = (async () => {
    for (let i = 0; i < blocks; i++) await writeAll(conn, block);
    await conn.closeWrite();
  })();
  const buf = new Uint8Array(256 * 1024);
  let received = 0;
  while (true) {
    const n = await conn.read(buf);
    if (n === null) break;
    for (let i = 0; i < n; i++) {
      if (buf[i] !== expectedBlock[(received + i) % block.length]) {
        throw new Error(`byte ${received + i} differs`);
      }
    }
    received += n;
  }
  await sending;
  assertEquals(received, blocks * block.length);
});

Deno.test("serve() keeps serving after a peer resets mid-stream", async () => {
  const events: ServerEvent[] = [];
  await using server = serve({ ...LOOPBACK, onEvent: (e) => events.push(e) });
  const conn = await Deno.connect({
    port: server.addr.port,
    hostname: "127.0.0.1",
  });
  // Send 16 MiB without reading a byte: the server blocks writing the reply.
  // Closing with unread bytes makes the kernel send RST, not FIN.
  const sending = writeAll(conn, randomBytes(16 << 20)).catch(() => {});
  await delay(100);
  conn.close();
  await sending;
  const payload = utf8("still there?");
  assertEquals(
    text(await roundTrip(server.addr.port, payload)),
    "STILL THERE?",
  );
  await waitUntil(
    () => server.stats.active === 0,
    10_000,
    "every connection to close",
  );
  const closes = events.filter((e) => e.type === "close");
  assertEquals(closes.length, 2);
  assert(
    closes.some((e) => e.type === "close" && e.error !== undefined),
    "the reset is reported",
  );
  assertEquals(server.stats.errors, 1);
});

Deno.test("serve() reports listen, connect and close events with byte counts", async () => {
  const events: ServerEvent[] = [];
  await using server = serve({ ...LOOPBACK, onEvent: (e) => events.push(e) });
  await roundTrip(server.addr.port, utf8("hello"));
  await waitUntil(
    () => server.stats.active === 0,
    10_000,
    "every connection to close",
  );
  assertEquals(events.map((e) => e.type), ["listen", "connect", "close"]);
  const close = events[2]!;
  if (close.type !== "close") throw new Error("the last event is not close");
  assertEquals([close.bytesIn, close.bytesOut, close.error], [5, 5, undefined]);
  assertEquals((close.remote as Deno.NetAddr).hostname, "127.0.0.1");
});

Deno.test("serve() answers a seed-style client: one write, one read of at most MAXLINE bytes, close", async () => {
  await using server = serve(LOOPBACK);
  using conn = await Deno.connect({
    port: server.addr.port,
    hostname: "127.0.0.1",
  });
  await writeAll(conn, utf8("hello from client.c"));
  const buf = new Uint8Array(MAXLINE);
  let n = 0;
  // The seed reads once; on loopback the reply to one write comes as one piece.
  n = (await conn.read(buf)) ?? 0;
  assertEquals(text(buf.subarray(0, n)), "HELLO FROM CLIENT.C");
});

Deno.test("serve({ once: true }) reads at most MAXLINE bytes once, replies and closes, like server.c", async () => {
  await using server = serve({ ...LOOPBACK, once: true });
  const short = await roundTrip(server.addr.port, utf8("short one"));
  assertEquals(text(short), "SHORT ONE");

  using conn = await Deno.connect({
    port: server.addr.port,
    hostname: "127.0.0.1",
  });
  await writeAll(conn, utf8("x".repeat(200)));
  const buf = new Uint8Array(400);
  let got = "";
  try {
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      got += text(buf.subarray(0, n));
    }
  } catch (err: unknown) {
    // The server closed with unread bytes: the kernel resets.
    if (!(err instanceof Deno.errors.ConnectionReset)) throw err;
  }
  assertEquals(got, "X".repeat(MAXLINE));
});

Deno.test("serve() counts an empty exchange: connect, half-close, close", async () => {
  await using server = serve(LOOPBACK);
  const reply = await roundTrip(server.addr.port, new Uint8Array(0));
  assertEquals(reply.length, 0);
  await waitUntil(
    () => server.stats.active === 0,
    10_000,
    "every connection to close",
  );
  assertEquals(server.stats.accepted, 1);
});

Deno.test("serve() listens on IPv6 loopback", async () => {
  await using server = serve({ hostname: "::1", port: 0 });
  assertEquals(server.addr.hostname, "::1");
  const reply = await roundTrip(server.addr.port, utf8("six"), "::1");
  assertEquals(text(reply), "SIX");
});

Deno.test("Server.shutdown() lets a transfer in progress finish within the grace period", async () => {
  const events: ServerEvent[] = [];
  const server = serve({ ...LOOPBACK, onEvent: (e) => events.push(e) });
  using conn = await Deno.connect({
    port: server.addr.port,
    hostname: "127.0.0.1",
  });
  const payload = randomBytes(2 << 20);
  await writeAll(conn, payload.subarray(0, 1024));
  const replyPromise = readToEnd(conn);
  const stopped = server.shutdown({ grace: 5000 });
  // The listener is closed at once (once the accept queue is drained).
  await waitUntil(
    () => events.some((e) => e.type === "shutdown"),
    10_000,
    "the listener to close",
  );
  let refused = false;
  try {
    (await Deno.connect({ port: server.addr.port, hostname: "127.0.0.1" }))
      .close();
  } catch (err: unknown) {
    refused = err instanceof Deno.errors.ConnectionRefused;
  }
  assert(refused, "new connections are refused during shutdown");
  await writeAll(conn, payload.subarray(1024));
  await conn.closeWrite();
  assertSameBytes(await replyPromise, expectedUpper(payload));
  await stopped;
  assertEquals(server.stats.active, 0);
});

Deno.test("Server.shutdown() closes idle connections when the grace period ends", async () => {
  const server = serve(LOOPBACK);
  using conn = await Deno.connect({
    port: server.addr.port,
    hostname: "127.0.0.1",
  });
  await writeAll(conn, utf8("x"));
  const buf = new Uint8Array(10);
  assertEquals(await conn.read(buf), 1);
  const started = Date.now();
  await server.shutdown({ grace: 100 });
  const took = Date.now() - started;
  assertGreater(took, 90);
  assertEquals(await conn.read(buf), null);
  await server.finished;
  const stats = server.stats;
  // Cut off by the server, not an error of the client's.
  assertEquals([stats.shutdownClosed, stats.errors], [1, 0]);
});

Deno.test("Server.shutdown() reports the closed listener in a shutdown event, after which clients are refused", async () => {
  const events: ServerEvent[] = [];
  const server = serve({ ...LOOPBACK, onEvent: (e) => events.push(e) });
  using open = await Deno.connect({
    port: server.addr.port,
    hostname: "127.0.0.1",
  });
  await writeAll(open, utf8("x"));
  assertEquals(await open.read(new Uint8Array(1)), 1);
  const stopped = server.shutdown({ grace: 5000 });
  await waitUntil(
    () => events.some((e) => e.type === "shutdown"),
    10_000,
    "the shutdown event",
  );
  assertEquals(events.find((e) => e.type === "shutdown"), {
    type: "shutdown",
    graceMs: 5000,
    open: 1,
  });
  await assertRejects(
    () => Deno.connect({ port: server.addr.port, hostname: "127.0.0.1" }),
    Deno.errors.ConnectionRefused,
  );
  await open.closeWrite();
  assertEquals(await open.read(new Uint8Array(1)), null);
  await stopped;
  assertEquals(server.stats.accepted, 1);
});

Deno.test("serve({ maxConns }) closes clients beyond the limit at once and keeps serving the others", async () => {
  const events: ServerEvent[] = [];
  await using server = serve({
    ...LOOPBACK,
    maxConns: 2,
    onEvent: (e) => events.push(e),
  });
  const port = server.addr.port;
  const hostname = "127.0.0.1";
  using first = await Deno.connect({ hostname, port });
  using second = await Deno.connect({ hostname, port });
  await waitUntil(
    () => server.stats.active === 2,
    10_000,
    "both clients to be accepted",
  );
  using third = await Deno.connect({ hostname, port });
  // The third is closed without a byte: its read ends at once.
  assertEquals(await readToEnd(third), new Uint8Array(0));
  assertEquals(server.stats.refused, 1);
  assert(events.some((e) => e.type === "refuse" && e.maxConns === 2));
  // The first two still work.
  for (const conn of [first, second]) {
    await writeAll(conn, utf8("still here"));
    await conn.closeWrite();
    assertEquals(text(await readToEnd(conn)), "STILL HERE");
  }
  await waitUntil(
    () => server.stats.active === 0,
    10_000,
    "every connection to close",
  );
  assertEquals(text(await roundTrip(port, utf8("again"))), "AGAIN");
});

Deno.test("serve({ idleTimeout }) closes a silent client and spares a busy one", async () => {
  await using server = serve({ ...LOOPBACK, idleTimeout: 200 });
  const port = server.addr.port;
  const hostname = "127.0.0.1";
  using silent = await Deno.connect({ hostname, port });
  using busy = await Deno.connect({ hostname, port });
  const started = Date.now();
  const silentEnd = readToEnd(silent);
  // The busy client sends a byte every 50 ms for 600 ms: never idle.
  const buf = new Uint8Array(1);
  for (let i = 0; i < 12; i++) {
    await writeAll(busy, utf8("a"));
    assertEquals(await busy.read(buf), 1);
    await delay(50);
  }
  assertEquals(await silentEnd, new Uint8Array(0));
  const elapsed = Date.now() - started;
  assert(elapsed >= 200, `closed after ${elapsed} ms, before the timeout`);
  await busy.closeWrite();
  assertEquals(await readToEnd(busy), new Uint8Array(0));
  await waitUntil(
    () => server.stats.active === 0,
    10_000,
    "every connection to close",
  );
  const stats = server.stats;
  assertEquals([stats.idleClosed, stats.errors], [1, 0]);
});
