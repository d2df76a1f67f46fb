// Copyright the upcase authors. MIT license.
// Faults at run time: /faults on the metrics address, from a real HTTP
// client (Deno's fetch), against server.ts as README runs it.

import { assertEquals, assertMatch } from "@std/assert";
import {
  readExactly,
  roundTrip,
  startWithMetrics,
  text,
  utf8,
  writeAll,
} from "./_util.ts";
import { closeQuietly } from "../src/_io.ts";

/** One `/faults` call: its status and body. */
async function call(
  metricsPort: number,
  method: string,
  body?: string,
): Promise<{ status: number; body: string }> {
  const response = await fetch(`http://127.0.0.1:${metricsPort}/faults`, {
    method,
    body,
  });
  return { status: response.status, body: await response.text() };
}

/** A client's whole exchange: send, half-close, read to the end. */
async function exchange(port: number, message: string): Promise<string> {
  return text(await roundTrip(port, utf8(message)));
}

/** A round trip on an open connection. */
async function roundTripOn(conn: Deno.Conn, message: string): Promise<string> {
  await writeAll(conn, utf8(message));
  return text(await readExactly(conn, message.length));
}

Deno.test("GET /faults reads the faults; without --fault-api, PUT and DELETE answer 403 with one line and change nothing", async () => {
  const { server, metricsPort } = await startWithMetrics([
    "--fault",
    "slice:min=1,max=2",
    "--fault-seed",
    "5",
  ]);
  await using _ = server;
  assertEquals(await call(metricsPort, "GET"), {
    status: 200,
    body: '{"faults":["slice:min=1,max=2"],"seed":5}\n',
  });
  for (const method of ["PUT", "DELETE"]) {
    const out = await call(metricsPort, method, '["close:after=1"]');
    assertEquals(out.status, 403);
    assertMatch(out.body, /^changing faults needs --fault-api .*\n$/);
  }
  assertEquals(
    JSON.parse((await call(metricsPort, "GET")).body).faults,
    ["slice:min=1,max=2"],
  );
});

Deno.test("PUT /faults with --fault-api: a new connection gets the fault, an open one keeps its own; GET returns it; DELETE clears; a bad body is 400, 413 or 422 and changes nothing; the metrics count the hits", async () => {
  const { server, port, metricsPort } = await startWithMetrics([
    "--fault-api",
    "--fault-seed",
    "11",
  ]);
  await using _ = server;
  const open = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    assertEquals(await roundTripOn(open, "before"), "BEFORE");
    const put = await call(metricsPort, "PUT", '["close:after=2"]');
    assertEquals(put, {
      status: 200,
      body: '{"faults":["close:after=2"],"seed":11}\n',
    });
    await server.waitForLine(
      /^faults set by 127\.0\.0\.1 at PORT \d+: close:after=2 \(--fault-seed 11\)$/,
    );
    // A new connection gets it; the open one does not.
    assertEquals(await exchange(port, "hello"), "HE");
    assertEquals(await roundTripOn(open, "after"), "AFTER");
    assertEquals(JSON.parse((await call(metricsPort, "GET")).body).faults, [
      "close:after=2",
    ]);
    // Bad changes: one line each, nothing changed.
    const bad: [string, number, RegExp][] = [
      [
        '["teleport"]',
        400,
        /^entry 0: Invalid --fault "teleport": unknown kind/,
      ],
      [
        '["close:after=1", "latency:delay=x"]',
        400,
        /^entry 1: Invalid --fault "latency:delay=x"/,
      ],
      ["{not json", 400, /^not JSON/],
      ['{"faults": []}', 400, /^not an array of strings/],
      ['["reset:after=1"]', 422, /^entry 0: "reset:after=1": .*--allow-ffi/],
      [JSON.stringify(["x".repeat(20_000)]), 413, /larger than 16384 bytes/],
    ];
    for (const [body, status, message] of bad) {
      const out = await call(metricsPort, "PUT", body);
      assertEquals(out.status, status, body);
      assertMatch(out.body, message);
      assertEquals(out.body.split("\n").length, 2, out.body);
    }
    assertEquals(JSON.parse((await call(metricsPort, "GET")).body).faults, [
      "close:after=2",
    ]);
    const metrics = await (await fetch(
      `http://127.0.0.1:${metricsPort}/metrics`,
    )).text();
    assertMatch(metrics, /^upcase_faults_injected_total\{fault="close"\} 1$/m);
    assertMatch(metrics, /^upcase_faults_active 1$/m);
    // DELETE clears them for new connections.
    assertEquals(await call(metricsPort, "DELETE"), {
      status: 200,
      body: '{"faults":[],"seed":11}\n',
    });
    assertEquals(await exchange(port, "hello"), "HELLO");
  } finally {
    closeQuietly(open);
  }
  const { code, stdout } = await server.stop();
  assertEquals(code, 0);
  assertMatch(stdout, /^faults cleared by 127\.0\.0\.1 at PORT \d+$/m);
});

Deno.test("PUT /faults with --workers 2: every Worker has the change before the response, and the JSON log names who asked", async () => {
  const { server, port, metricsPort } = await startWithMetrics(
    ["--fault-api", "--workers", "2", "--log-format", "json"],
    [`--allow-read=${new URL("../src", import.meta.url).pathname}`],
  );
  await using _ = server;
  assertEquals(
    (await call(metricsPort, "PUT", '["close:after=1"]')).status,
    200,
  );
  // 20 new connections: the kernel spreads them over both Workers, and each
  // gets the fault.
  for (let i = 0; i < 20; i++) {
    assertEquals(await exchange(port, "hello"), "H");
  }
  const { stdout } = await server.stop();
  const records = stdout.split("\n").filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line));
  const change = records.find((r) => r.event === "faults");
  assertEquals(change.faults, ["close:after=1"]);
  assertMatch(change.by, /^127\.0\.0\.1:\d+$/);
  const hit = records.filter((r) =>
    r.event === "close" && r.faults?.[0] === "close after 1 B"
  );
  assertEquals(hit.length, 20);
  assertEquals(new Set(hit.map((r) => r.worker)).size, 2);
});
