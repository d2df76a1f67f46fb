// Copyright the upcase authors. MIT license.
// The HTTP side channel (--metrics) against hostile peers: a descriptor
// shortage, a head that trickles in, an idle keep-alive connection, more
// connections than the cap, bad Host fields while nobody reads stderr; and
// what a well-behaved client relies on: pipelining in order, HTTP/1.0, the
// event stream chunked or not. All on real sockets, seen from the peer.

import { assert, assertEquals, assertMatch } from "@std/assert";
import {
  CHILD_TIME_LIMIT_MS,
  denoRun,
  establishedOn,
  freePort,
  roundTrip,
  startWithMetrics,
  text,
  utf8,
  writeAll,
} from "./_util.ts";
import {
  countDescriptors,
  setOpenFileLimit,
  waitUntil,
  withTimeout,
} from "../stress/_util.ts";
import { HTTP_LIMITS } from "../src/_http_server.ts";

/** A guard on waits for what the server should do by itself. */
const GUARD_MS = 20_000;

/** Reads `conn` until the server closes (or resets), as text. */
async function readUntilClosed(conn: Deno.Conn): Promise<string> {
  const chunks: string[] = [];
  const buffer = new Uint8Array(65536);
  const decoder = new TextDecoder();
  try {
    for (
      let n = await conn.read(buffer);
      n !== null;
      n = await conn.read(buffer)
    ) {
      chunks.push(decoder.decode(buffer.subarray(0, n), { stream: true }));
    }
  } catch (err: unknown) {
    if (!(err instanceof Deno.errors.ConnectionReset)) throw err;
  }
  return chunks.join("");
}

/** Sends `request` on a new connection and reads until the server closes. */
async function exchange(port: number, request: string): Promise<string> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(conn, utf8(request));
  return await withTimeout(readUntilClosed(conn), GUARD_MS, request);
}

Deno.test("server.ts --metrics lives through a descriptor shortage: the side channel says so, retries, and answers once descriptors come back", async () => {
  const { server, port, metricsPort } = await startWithMetrics();
  await using _server = server;
  const pid = server.child.pid;
  // A few descriptors to spare, then idle clients take them all.
  await setOpenFileLimit(pid, await countDescriptors(pid) + 4);
  const idle: Deno.Conn[] = [];
  try {
    for (let i = 0; i < 20; i++) {
      idle.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    }
    await server.waitForLine(/^accept failed: /, GUARD_MS);
    // The kernel completes the connect; the server cannot accept it yet.
    using scrape = await Deno.connect({
      hostname: "127.0.0.1",
      port: metricsPort,
    });
    await writeAll(
      scrape,
      utf8("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    );
    await server.waitForLine(
      /^metrics address: accept failed: Too many open files; retrying$/,
      GUARD_MS,
    );
    for (const conn of idle.splice(0)) conn.close();
    const response = await withTimeout(
      readUntilClosed(scrape),
      GUARD_MS,
      "the scrape, once descriptors are back",
    );
    assertMatch(response, /^HTTP\/1\.1 200 OK\r\n/);
    assertMatch(response, /^upcase_connections_accepted_total \d+$/m);
    assertEquals(text(await roundTrip(port, utf8("still here"))), "STILL HERE");
  } finally {
    for (const conn of idle) conn.close();
  }
  const out = await server.stop();
  assertEquals([out.code, out.stderr], [0, ""]);
  assertMatch(out.stdout, /\nServed \d+ connections on /);
});

Deno.test("server.ts --metrics: a head that trickles in gets 408 at the header deadline, and an idle keep-alive connection is closed at its own", async () => {
  const { server, metricsPort } = await startWithMetrics();
  await using _server = server;
  const trickle = async () => {
    using conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: metricsPort,
    });
    await writeAll(conn, utf8("GET /metrics HTTP/1.1\r\nHost: x\r\nX: "));
    const started = Date.now();
    // A byte every 500 ms, never the end of the head: a deadline per read
    // would never fire.
    const dripping = setInterval(() => {
      conn.write(utf8("x")).catch(() => clearInterval(dripping));
    }, 500);
    try {
      const response = await withTimeout(
        readUntilClosed(conn),
        GUARD_MS,
        "the trickling head to be cut off",
      );
      return { response, ms: Date.now() - started };
    } finally {
      clearInterval(dripping);
    }
  };
  const keptAlive = async () => {
    using conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: metricsPort,
    });
    await writeAll(conn, utf8("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    const started = Date.now();
    const response = await withTimeout(
      readUntilClosed(conn),
      GUARD_MS,
      "the idle keep-alive connection to be closed",
    );
    return { response, ms: Date.now() - started };
  };
  const [slow, idle] = await Promise.all([trickle(), keptAlive()]);
  assertMatch(slow.response, /^HTTP\/1\.1 408 Request Timeout\r\n/);
  assert(
    slow.ms >= HTTP_LIMITS.headerTimeout - 1000,
    `cut after ${slow.ms} ms`,
  );
  assertMatch(idle.response, /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nok\n$/);
  assert(
    idle.ms >= HTTP_LIMITS.keepAliveTimeout - 1000,
    `closed after ${idle.ms} ms`,
  );
});

Deno.test("server.ts --metrics holds at most 32 connections from one address: new ones make the longest-silent give way, and requests still get through", async () => {
  const { server, metricsPort } = await startWithMetrics();
  await using _server = server;
  const share = HTTP_LIMITS.maxConnectionsPerAddress;
  const silent: Deno.Conn[] = [];
  const extra = 10;
  try {
    for (let i = 0; i < share + extra; i++) {
      silent.push(
        await Deno.connect({ hostname: "127.0.0.1", port: metricsPort }),
      );
    }
    const response = await exchange(
      metricsPort,
      "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assertMatch(response, /^HTTP\/1\.1 200 OK\r\n/);
    // The oldest ones were closed to make room, as their clients see.
    for (const conn of silent.slice(0, extra)) {
      assertEquals(
        await withTimeout(readUntilClosed(conn), GUARD_MS, "an evicted client"),
        "",
      );
    }
    await waitUntil(
      async () => await establishedOn(metricsPort) <= share,
      GUARD_MS,
      `at most ${share} connections held`,
    );
  } finally {
    for (const conn of silent) conn.close();
  }
});

Deno.test("server.ts --metrics: connections that pipeline without end do not lock a new one out; the one answered most makes room", async () => {
  const { server, metricsPort } = await startWithMetrics();
  await using _server = server;
  const share = HTTP_LIMITS.maxConnectionsPerAddress;
  const hogs: Deno.Conn[] = [];
  const request = utf8("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".repeat(200));
  const answered: number[] = [];
  try {
    for (let i = 0; i < share; i++) {
      const conn = await Deno.connect({
        hostname: "127.0.0.1",
        port: metricsPort,
      });
      hogs.push(conn);
      answered.push(0);
      await writeAll(conn, request);
      // Read the answers as they come, so each always has one queued.
      (async () => {
        const buffer = new Uint8Array(65536);
        for (let n = await conn.read(buffer); n !== null;) {
          answered[i]! +=
            text(buffer.subarray(0, n)).split("HTTP/1.1 ").length -
            1;
          n = await conn.read(buffer);
        }
      })().catch(() => {});
    }
    await waitUntil(
      () => answered.every((n) => n > 0),
      GUARD_MS,
      "every pipelining connection to be answered once",
    );
    // Every connection of the address now waits its turn with a request.
    assertMatch(
      await exchange(
        metricsPort,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      ),
      /^HTTP\/1\.1 200 OK\r\n/,
    );
  } finally {
    for (const conn of hogs) conn.close();
  }
});

Deno.test("server.ts --metrics answers bad Host fields with 400 and one line, and prints nothing while nobody reads its stderr", async () => {
  const port = freePort();
  const metricsPort = freePort();
  // Nobody reads its stderr until the end: a write to a full pipe would
  // stop the whole server.
  const child = new Deno.Command(Deno.execPath(), {
    args: denoRun("server.ts", `127.0.0.1:${port},127.0.0.1:${metricsPort}`, [
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      "--metrics",
      `127.0.0.1:${metricsPort}`,
      "--quiet",
    ]),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
    signal: AbortSignal.timeout(CHILD_TIME_LIMIT_MS),
  }).spawn();
  try {
    await waitUntil(
      async () => {
        try {
          (await Deno.connect({ hostname: "127.0.0.1", port: metricsPort }))
            .close();
          return true;
        } catch (err: unknown) {
          if (err instanceof Deno.errors.ConnectionRefused) return false;
          throw err;
        }
      },
      GUARD_MS,
      "the metrics address to listen",
    );
    const hosts = ["a b", "[::1", "x:999999", "%zz"];
    for (const host of hosts) {
      const response = await exchange(
        metricsPort,
        `GET /metrics HTTP/1.1\r\nHost: ${host}\r\n\r\n`,
      );
      assertMatch(
        response,
        /^HTTP\/1\.1 400 Bad Request\r\n[^]*\r\n\r\nmalformed Host field\n$/,
      );
    }
    assertMatch(
      await exchange(
        metricsPort,
        "GET http://x:99999/metrics HTTP/1.1\r\nHost: x\r\n\r\n",
      ),
      /^HTTP\/1\.1 400 /,
    );
    // Enough for a 64 KiB pipe many times over, had each printed a trace.
    for (let i = 0; i < 300; i++) {
      await exchange(
        metricsPort,
        `GET /metrics HTTP/1.1\r\nHost: ${hosts[i % hosts.length]}\r\n\r\n`,
      );
    }
    assertMatch(
      await exchange(
        metricsPort,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      ),
      /^HTTP\/1\.1 200 OK\r\n/,
    );
    assertEquals(text(await roundTrip(port, utf8("echo"))), "ECHO");
  } finally {
    child.kill("SIGTERM");
  }
  const [status, stderr] = await Promise.all([
    child.status,
    new Response(child.stderr).text(),
  ]);
  assertEquals([status.code, stderr], [0, ""]);
});

Deno.test("server.ts --metrics answers pipelined requests in order, closes after Connection: close, and speaks HTTP/1.0", async () => {
  const { server, metricsPort } = await startWithMetrics();
  await using _server = server;
  const responses = await exchange(
    metricsPort,
    "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" +
      "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n" +
      "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n" +
      "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" +
      "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" +
      "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", // after the close: unanswered
  );
  const statuses = [...responses.matchAll(/^HTTP\/1\.1 (\d+) /gm)].map((m) =>
    Number(m[1])
  );
  assertEquals(statuses, [200, 200, 404, 405, 200]);
  assertMatch(responses, /connection: close\r\n\r\nok\n$/);
  const old = await exchange(metricsPort, "GET /healthz HTTP/1.0\r\n\r\n");
  assertMatch(old, /^HTTP\/1\.1 200 OK\r\n[^]*connection: close\r\n\r\nok\n$/);
});

Deno.test("server.ts --metrics streams /events chunked to HTTP/1.1 and as it comes to HTTP/1.0", async () => {
  const { server, metricsPort } = await startWithMetrics();
  await using _server = server;
  const framings = [
    ["1.1", /\r\n\r\n[0-9a-f]+\r\nretry: \d+\n\nevent: hello\n/],
    ["1.0", /\r\n\r\nretry: \d+\n\nevent: hello\n/],
  ] as const;
  for (const [version, framing] of framings) {
    using conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: metricsPort,
    });
    await writeAll(
      conn,
      utf8(`GET /events HTTP/${version}\r\nHost: x\r\n\r\n`),
    );
    let seen = "";
    const buffer = new Uint8Array(65536);
    await withTimeout(
      (async () => {
        while (!/event: hello\n/.test(seen)) {
          const n = await conn.read(buffer);
          if (n === null) break;
          seen += new TextDecoder().decode(buffer.subarray(0, n));
        }
      })(),
      GUARD_MS,
      `the first event over HTTP/${version}`,
    );
    assertMatch(seen, /^HTTP\/1\.1 200 OK\r\n/);
    assertMatch(seen, /content-type: text\/event-stream/);
    assertEquals(/transfer-encoding: chunked/.test(seen), version === "1.1");
    assertMatch(seen, framing);
  }
  // Shutdown ends the streams and the server exits.
  const out = await server.stop();
  assertEquals(out.code, 0);
});
