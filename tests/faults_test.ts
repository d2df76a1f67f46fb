// Copyright the upcase authors. MIT license.
// --fault, checked from the peer's side: for each fault a real client
// measures what the fault promises (a delay, a rate, pieces, a stall, a cut,
// an RST and no FIN, a late FIN, flipped bits, an accept pause), and the plan
// is seeded: the same seed hits the same connections.

import {
  assert,
  assertEquals,
  assertGreater,
  assertGreaterOrEqual,
  assertLess,
  assertMatch,
} from "@std/assert";
import { serve, type ServeOptions, type ServerEvent } from "../mod.ts";
import { closeQuietly } from "../src/_io.ts";
import { waitUntil } from "../stress/_util.ts";
import {
  concat,
  denoRun,
  expectedUpper,
  randomBytes,
  readExactly,
  ROOT,
  runDeno,
  ServerProcess,
  text,
  utf8,
  writeAll,
} from "./_util.ts";

const LOOPBACK = { hostname: "127.0.0.1", port: 0 } as const;

/** A server with `faults` and a fixed seed, and its events. */
function faultyServer(faults: string[], options: ServeOptions = {}) {
  const events: ServerEvent[] = [];
  const server = serve({
    ...LOOPBACK,
    faults,
    faultSeed: 1,
    onEvent: (e) => events.push(e),
    ...options,
  });
  return { server, events };
}

/** What a client saw: each read's size and time, and how it ended. */
interface Seen {
  reply: Uint8Array;
  /** Milliseconds after the connect at which each read returned. */
  times: number[];
  sizes: number[];
  end: "eof" | "reset";
}

/**
 * Connects, writes `payload` (half-closing after it unless `halfClose` is
 * false), and reads until EOF or a reset.
 */
async function watch(
  port: number,
  payload: Uint8Array,
  halfClose = true,
): Promise<Seen> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const started = performance.now();
  const seen: Seen = {
    reply: new Uint8Array(0),
    times: [],
    sizes: [],
    end: "eof",
  };
  const chunks: Uint8Array[] = [];
  const writing = (async () => {
    await writeAll(conn, payload);
    if (halfClose) await conn.closeWrite();
  })().catch(() => {});
  try {
    const buf = new Uint8Array(65536);
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
      seen.times.push(performance.now() - started);
      seen.sizes.push(n);
    }
  } catch (err: unknown) {
    if (!(err instanceof Deno.errors.ConnectionReset)) throw err;
    seen.end = "reset";
  } finally {
    await writing;
    closeQuietly(conn);
  }
  seen.reply = concat(chunks);
  return seen;
}

/** The close event of connection `id`, once it came. */
async function closeOf(events: ServerEvent[], id: number) {
  await waitUntil(
    () => events.some((e) => e.type === "close" && e.id === id),
    10_000,
    `close event of connection ${id}`,
  );
  return events.find((e): e is Extract<ServerEvent, { type: "close" }> =>
    e.type === "close" && e.id === id
  )!;
}

Deno.test("--fault latency holds each reply chunk for the delay after its request bytes arrived, and a half-closed client still gets the whole reply, then FIN", async () => {
  const { server, events } = faultyServer(["latency:delay=300ms"]);
  await using _ = server;
  const payload = randomBytes(1000);
  const seen = await watch(server.addr.port, payload);
  assertEquals(seen.reply, expectedUpper(payload));
  assertEquals(seen.end, "eof");
  assertGreaterOrEqual(seen.times[0]!, 290);
  assertEquals((await closeOf(events, 1)).faults, ["latency 300 ms"]);
});

Deno.test("--fault latency lets reads go on while replies wait: two chunks 200 ms apart come back 300 ms after each, in order", async () => {
  const { server } = faultyServer(["latency:delay=300ms"]);
  await using _ = server;
  using conn = await Deno.connect({ ...LOOPBACK, port: server.addr.port });
  const started = performance.now();
  await writeAll(conn, utf8("first"));
  const arrivals: number[] = [];
  const reading = (async () => {
    const buf = new Uint8Array(64);
    let got = "";
    while (got.length < 11) {
      const n = await conn.read(buf);
      if (n === null) break;
      got += text(buf.subarray(0, n));
      arrivals.push(performance.now() - started);
    }
    return got;
  })();
  await new Promise((resolve) => setTimeout(resolve, 200));
  const secondSent = performance.now() - started;
  await writeAll(conn, utf8("second"));
  assertEquals(await reading, "FIRSTSECOND");
  assertGreaterOrEqual(arrivals[0]!, 290);
  assertGreaterOrEqual(arrivals.at(-1)!, secondSent + 290);
});

Deno.test("--fault bandwidth sends the reply at the rate, and slow-read reads the request at the rate", async () => {
  for (const fault of ["bandwidth:rate=16K", "slow-read:rate=16K"]) {
    const { server } = faultyServer([fault]);
    await using _ = server;
    const payload = randomBytes(24 * 1024);
    const seen = await watch(server.addr.port, payload);
    assertEquals(seen.reply, expectedUpper(payload), fault);
    // 24 KiB at 16 KiB/s: 1.5 s, less the first step (50 ms' worth).
    assertGreaterOrEqual(seen.times.at(-1)!, 1300, fault);
    assertGreater(seen.sizes.length, 10, fault);
  }
});

Deno.test("--fault slice writes the reply in pieces of min..max bytes that the client reads one at a time", async () => {
  const { server } = faultyServer(["slice:min=1,max=4,gap=10ms"]);
  await using _ = server;
  const payload = utf8("the quick brown fox jumps over the lazy dog");
  const seen = await watch(server.addr.port, payload);
  assertEquals(seen.reply, expectedUpper(payload));
  // 43 bytes in pieces of at most 4, 10 ms apart: at least 11 reads (pieces
  // that arrive together are read together, rarely).
  assertGreaterOrEqual(seen.sizes.length, 11);
  assertLess(Math.min(...seen.sizes), 5);
});

Deno.test("--fault stall sends the first bytes, then nothing while the connection stays ESTABLISHED, until the server closes it", async () => {
  const { server, events } = faultyServer(["stall:after=5"]);
  await using _ = server;
  using conn = await Deno.connect({ ...LOOPBACK, port: server.addr.port });
  await writeAll(conn, utf8("hello, stall"));
  assertEquals(text(await readExactly(conn, 5)), "HELLO");
  const buf = new Uint8Array(64);
  // Nothing more comes: a read that waits 500 ms gets nothing.
  const more = await Promise.race([
    conn.read(buf).then(() => "bytes"),
    new Promise((resolve) => setTimeout(() => resolve("nothing"), 500)),
  ]);
  assertEquals(more, "nothing");
  const { stdout } = await new Deno.Command("ss", {
    args: ["-Htn", "state", "established", `( sport = :${server.addr.port} )`],
    stdout: "piped",
  }).output();
  assertEquals(text(stdout).trim().split("\n").length, 1);
  await server.shutdown({ grace: 0 });
  const close = await closeOf(events, 1);
  assertEquals([close.bytesOut, close.faults], [5, ["stall after 5 B"]]);
});

Deno.test("--fault close sends the first bytes, then FIN (never RST), though the client sent more", async () => {
  const { server, events } = faultyServer(["close:after=10"]);
  await using _ = server;
  const payload = randomBytes(100_000);
  const seen = await watch(server.addr.port, payload);
  assertEquals(seen.reply, expectedUpper(payload.subarray(0, 10)));
  assertEquals(seen.end, "eof");
  assertEquals((await closeOf(events, 1)).bytesOut, 10);
});

Deno.test("--fault latency with close: the queued reply is cut at the point, and the connection's close says what went out", async () => {
  const { server, events } = faultyServer([
    "latency:delay=100ms",
    "close:after=10",
  ]);
  await using _ = server;
  const payload = randomBytes(1000);
  const seen = await watch(server.addr.port, payload);
  assertEquals(seen.reply, expectedUpper(payload.subarray(0, 10)));
  assertEquals(seen.end, "eof");
  const close = await closeOf(events, 1);
  assertEquals(close.bytesOut, 10);
  assertEquals(close.faults, ["latency 100 ms", "close after 10 B"]);
});

Deno.test("--fault slow-close holds the final FIN back after the whole reply", async () => {
  const { server } = faultyServer(["slow-close:delay=500ms"]);
  await using _ = server;
  const payload = randomBytes(100);
  const conn = await Deno.connect({ ...LOOPBACK, port: server.addr.port });
  try {
    await writeAll(conn, payload);
    await conn.closeWrite();
    const buf = new Uint8Array(1000);
    let got = 0;
    while (got < 100) got += (await conn.read(buf))!;
    const replied = performance.now();
    assertEquals(await conn.read(buf), null);
    assertGreaterOrEqual(performance.now() - replied, 450);
  } finally {
    conn.close();
  }
});

Deno.test("--fault corrupt flips one bit in about one reply byte of every K, none in the first skip bytes", async () => {
  const { server } = faultyServer(["corrupt:every=100,skip=16"]);
  await using _ = server;
  const payload = randomBytes(10_000);
  const seen = await watch(server.addr.port, payload);
  const want = expectedUpper(payload);
  assertEquals(seen.reply.length, want.length);
  const flipped: number[] = [];
  for (let i = 0; i < want.length; i++) {
    if (seen.reply[i] === want[i]) continue;
    flipped.push(i);
    const diff = seen.reply[i]! ^ want[i]!;
    assertEquals(diff & (diff - 1), 0, `byte ${i}: more than one bit`);
  }
  // One in each block of 100 after the first 16: 99 or 100.
  assertGreaterOrEqual(flipped.length, 99);
  assertLess(flipped.length, 101);
  assertGreaterOrEqual(flipped[0]!, 16);
});

Deno.test("--fault accept-pause keeps a new client waiting in the kernel's queue until the pause ends, then serves it", async () => {
  const { server, events } = faultyServer(["accept-pause:for=800ms"]);
  await using _ = server;
  const started = performance.now();
  const seen = await watch(server.addr.port, utf8("wait"));
  assertEquals(text(seen.reply), "WAIT");
  assertGreaterOrEqual(performance.now() - started, 600);
  assert(events.some((e) => e.type === "accept-pause"));
});

Deno.test("--fault accept-pause: a shutdown during the pause ends it at once, and a queued client gets a reset, not a reply", async () => {
  const { server } = faultyServer(["accept-pause:for=60s"]);
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  await writeAll(conn, utf8("queued"));
  const started = performance.now();
  await server.shutdown({ grace: 5_000 });
  assertLess(performance.now() - started, 2_000);
  const buf = new Uint8Array(16);
  const end = await conn.read(buf).then(
    (n) => n === null ? "eof" : "data",
    (err) => err instanceof Deno.errors.ConnectionReset ? "reset" : err,
  );
  assertEquals(end, "reset");
  closeQuietly(conn);
});

Deno.test("--fault p=0.3 hits 300 +- 50 of 1,000 connections, the same ones for the same seed, and from= only clients in its range", async () => {
  const hit = async (seed: number, fault: string) => {
    const { server, events } = faultyServer([fault], { faultSeed: seed });
    await using _ = server;
    for (let i = 0; i < 1000; i++) {
      await watch(server.addr.port, utf8("x"));
    }
    await waitUntil(
      () => events.filter((e) => e.type === "close").length === 1000,
      10_000,
      "1,000 close events",
    );
    return events.flatMap((e) =>
      e.type === "close" && e.faults !== undefined ? [e.id] : []
    );
  };
  const first = await hit(7, "slow-close:delay=1ms,p=0.3");
  assertGreaterOrEqual(first.length, 250);
  assertLess(first.length, 351);
  assertEquals(await hit(7, "slow-close:delay=1ms,p=0.3"), first);
  assert(
    (await hit(8, "slow-close:delay=1ms,p=0.3")).join() !== first.join(),
  );
  // from=: the clients come from 127.0.0.1.
  const outside = faultyServer(["close:after=1,from=10.0.0.0/8"]);
  await using _outside = outside.server;
  assertEquals(
    text((await watch(outside.server.addr.port, utf8("abc"))).reply),
    "ABC",
  );
  const inside = faultyServer(["close:after=1,from=127.0.0.0/8"]);
  await using _inside = inside.server;
  assertEquals(
    text((await watch(inside.server.addr.port, utf8("abc"))).reply),
    "A",
  );
});

Deno.test("server.ts --fault reset with --allow-ffi sends the first bytes, then an RST and no FIN: the client's read fails with ECONNRESET and the server leaves no TIME-WAIT", async () => {
  await using server = await ServerProcess.start(
    ["--fault", "reset:after=100", "--fault-seed", "3"],
    "127.0.0.1",
    undefined,
    { flags: ["--allow-ffi"] },
  );
  assertMatch(
    server.log[0]!,
    / with faults: reset:after=100 \(--fault-seed 3\)$/,
  );
  const payload = randomBytes(1000);
  const seen = await watch(server.port, payload, false);
  assertEquals(seen.reply, expectedUpper(payload.subarray(0, 100)));
  assertEquals(seen.end, "reset");
  await server.waitForLine(/\(fault: reset after 100 B\)$/);
  const { stdout } = await new Deno.Command("ss", {
    args: ["-Htan", "state", "time-wait", `( sport = :${server.port} )`],
    stdout: "piped",
  }).output();
  assertEquals(text(stdout).trim(), "");
});

Deno.test("server.ts --fault: a bad spec, reset without --allow-ffi and --fault-seed alone are one line and exit 1", async () => {
  const cases: [string[], RegExp][] = [
    [
      ["--fault", "latency:delay=fast"],
      /^error: Invalid --fault "latency:delay=fast": delay: "fast" is not a duration/,
    ],
    [
      ["--fault", "teleport"],
      /^error: Invalid --fault "teleport": unknown kind "teleport"/,
    ],
    [
      ["--fault", "reset:after=1"],
      /^error: Invalid --fault "reset:after=1": .*needs --allow-ffi/,
    ],
    [
      ["--fault-seed", "3"],
      /^error: Conflicting flags: --fault-seed goes with --fault or --fault-api\n$/,
    ],
  ];
  for (const [args, message] of cases) {
    const out = await runDeno(
      denoRun("server.ts", "127.0.0.1:0", ["--port", "0", ...args]),
    );
    assertEquals(out.code, 1, args.join(" "));
    assertEquals(out.stderr.trim().split("\n").length, 1, out.stderr);
    assertMatch(out.stderr, message);
  }
});

Deno.test("server.ts --fault slice: the seed's client.c reads once and prints only the first piece; client.ts prints the whole reply", async (t) => {
  const gcc = await new Deno.Command("sh", {
    args: ["-c", "command -v gcc"],
    stdout: "null",
  }).output();
  if (!gcc.success) {
    if (Deno.env.get("CI") === "true") throw new Error("gcc is not installed");
    console.log("SKIPPED: gcc is not installed");
    return;
  }
  await using server = await ServerProcess.start([
    "--fault",
    "slice:min=3,max=3,gap=50ms",
    "--fault-seed",
    "1",
  ]);
  const dir = await Deno.makeTempDir({ prefix: "upcase_slice_" });
  try {
    const source = (await Deno.readTextFile(new URL("tutorial/client.c", ROOT)))
      .replace(/#define SERV_PORT 6666/, `#define SERV_PORT ${server.port}`);
    await Deno.writeTextFile(`${dir}/client.c`, source);
    const built = await new Deno.Command("gcc", {
      args: ["-o", `${dir}/client`, `${dir}/client.c`],
      stderr: "piped",
    }).output();
    assert(built.success, text(built.stderr));
    await t.step("client.c", async () => {
      const out = await new Deno.Command(`${dir}/client`, {
        args: ["hello, world"],
        stdout: "piped",
        signal: AbortSignal.timeout(10_000),
      }).output();
      // printf() is buffered on a pipe, write() is not: the order varies.
      assertEquals(
        text(out.stdout).replace("Response from server:\n", ""),
        "HEL",
      );
    });
    await t.step("client.ts", async () => {
      const out = await runDeno(
        denoRun("client.ts", `127.0.0.1:${server.port}`, [
          "--port",
          String(server.port),
          "hello, world",
        ]),
      );
      assertEquals(out.code, 0, out.stderr);
      assertEquals(out.stdout, "Response from server:\nHELLO, WORLD\n");
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--fault latency: a client that resets while the reply queue is full is closed, not held", async () => {
  const { server, events } = faultyServer(["latency:delay=1s"]);
  await using _ = server;
  const conn = await Deno.connect({ ...LOOPBACK, port: server.addr.port });
  // Send without reading until the writes stop going through.
  const chunk = new Uint8Array(64 * 1024).fill(0x61);
  for (let sent = 0; sent < 64 * 1024 * 1024; sent += chunk.length) {
    const wrote = await Promise.race([
      writeAll(conn, chunk).then(() => true),
      new Promise<false>((resolve) => setTimeout(() => resolve(false), 1000)),
    ]);
    if (!wrote) break;
  }
  conn.close(); // with replies unread: an RST
  const close = await closeOf(events, 1);
  assert(close.error !== undefined || close.reason !== "eof", close.reason);
  assertEquals(server.stats.active, 0);
});

Deno.test("--fault stall:at= stops a read already waiting: the client's later FIN gets no FIN back", async () => {
  const { server } = faultyServer(["stall:at=300ms"]);
  await using _ = server;
  using conn = await Deno.connect({ ...LOOPBACK, port: server.addr.port });
  await writeAll(conn, utf8("hello"));
  assertEquals(text(await readExactly(conn, 5)), "HELLO");
  const buf = new Uint8Array(16);
  // The server's read() now waits; the stall strikes at 300 ms.
  await new Promise((resolve) => setTimeout(resolve, 600));
  await conn.closeWrite();
  const end = await Promise.race([
    conn.read(buf).then((n) => n === null ? "FIN" : "bytes"),
    new Promise((resolve) => setTimeout(() => resolve("nothing"), 500)),
  ]);
  assertEquals(end, "nothing");
});

Deno.test("--fault accept-pause every=: a client that connects during a pause waits for its end, even when the server was idle", async () => {
  const { server } = faultyServer(["accept-pause:for=1500ms,every=3s"]);
  await using _ = server;
  const start = performance.now();
  // Into the second pause (3 s to 4.5 s), with the accept of an idle server
  // waiting since before it.
  await new Promise((resolve) => setTimeout(resolve, 3500));
  const connected = performance.now() - start;
  const seen = await watch(server.addr.port, utf8("late"));
  assertEquals(text(seen.reply), "LATE");
  if (connected < 4300) {
    assertGreaterOrEqual(performance.now() - start, 4400);
  }
});
