// Copyright the upcase authors. MIT license.
import { assertEquals, assertGreater, assertMatch } from "@std/assert";
import { type LoadMode, runLoad, serve } from "../mod.ts";
import { runClient, ServerProcess } from "./_util.ts";

const LOOPBACK = { hostname: "127.0.0.1", port: 0 };

Deno.test("runLoad() completes and verifies round trips, streams and one-shot exchanges", async () => {
  await using server = serve(LOOPBACK);
  for (const mode of ["rtt", "stream", "oneshot"] as LoadMode[]) {
    const report = await runLoad({
      mode,
      port: server.addr.port,
      connections: 4,
      duration: 300,
    });
    assertEquals(report.errors, 0, `${mode}: ${report.errorSamples}`);
    assertGreater(report.bytesReceived, 0);
    assertEquals(report.bytesReceived, report.bytesSent, mode);
    if (mode !== "stream") {
      assertGreater(report.requests, 0);
      assertGreater(report.latency!.p99, 0);
    }
  }
});

Deno.test("runLoad() counts replies that are not the upper case of the request as errors", async () => {
  // A plain echo server: right length, wrong bytes.
  using listener = Deno.listen(LOOPBACK);
  const serving = (async () => {
    for await (const conn of listener) {
      (async () => {
        const buf = new Uint8Array(1024);
        try {
          while (true) {
            const n = await conn.read(buf);
            if (n === null) break;
            await conn.write(buf.subarray(0, n));
          }
        } catch {
          // the load generator gave up on this connection
        } finally {
          conn.close();
        }
      })();
    }
  })().catch(() => {});
  for (const mode of ["rtt", "oneshot"] as LoadMode[]) {
    const report = await runLoad({
      mode,
      port: (listener.addr as Deno.NetAddr).port,
      connections: 2,
      duration: 100,
    });
    assertGreater(report.errors, 0, mode);
    assertEquals(report.requests, 0, mode);
  }
  listener.close();
  await serving;
});

Deno.test("client.ts --bench --json reports a verified run", async () => {
  await using server = await ServerProcess.start(["--quiet"]);
  const out = await runClient(server.port, [
    "--bench",
    "rtt",
    "--connections",
    "3",
    "--duration",
    "0.3",
    "--json",
  ]);
  assertEquals(out.code, 0, out.stderr);
  const report = JSON.parse(out.stdout);
  assertEquals([report.mode, report.connections, report.errors], [
    "rtt",
    3,
    0,
  ]);
  assertGreater(report.requests, 0);
});

Deno.test("client.ts --bench prints requests/s, throughput and latency percentiles", async () => {
  await using server = await ServerProcess.start(["--quiet"]);
  const out = await runClient(server.port, [
    "--bench",
    "oneshot",
    "--duration",
    "0.3",
  ]);
  assertEquals(out.code, 0, out.stderr);
  assertMatch(
    out.stdout,
    /^upcase load: oneshot, 20 connections, 32 B messages/,
  );
  assertMatch(out.stdout, /\nrequests {4}[\d,]+ \([\d,]+\/s\)\n/);
  assertMatch(out.stdout, /\nlatency {5}p50 .* p90 .* p99 .* p99\.9 .* max /);
  assertMatch(out.stdout, /\nerrors {6}0$/m);
});

Deno.test("client.ts --bench against a port nobody listens on exits 3 with the usual message", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  const out = await runClient(port, ["--bench", "rtt", "--duration", "0.2"]);
  assertEquals(out, {
    code: 3,
    stdout: "",
    stderr:
      `error: Connection refused: no server is listening on 127.0.0.1:${port} (start one with: deno task start)\n`,
  });
});
