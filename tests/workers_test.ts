// Copyright the upcase authors. MIT license.
// server.ts --workers N (SO_REUSEPORT Workers in one process) and
// --metrics HOST:PORT (/metrics, /healthz), end to end on loopback with
// README's permissions; the Worker pool's replacement of a dead Worker
// through its API; /metrics read by a real Prometheus parser.

import { assert, assertEquals, assertMatch } from "@std/assert";
import {
  assertSameBytes,
  CHILD_TIME_LIMIT_MS,
  denoRun,
  expectedUpper,
  freePort,
  randomBytes,
  readToEnd,
  roundTrip,
  runDeno,
  ServerProcess,
  text,
  utf8,
  writeAll,
  writeStdin,
} from "./_util.ts";
import { WorkerPool } from "../src/_worker_pool.ts";
import { request } from "../mod.ts";
import { makeTestCerts } from "./_certs.ts";
import type { ServerEvent } from "../src/serve.ts";
import { waitUntil } from "../stress/_util.ts";

/** README's permission for the Workers' modules. */
const SRC = new URL("../src", import.meta.url).pathname;
const READ_SRC = `--allow-read=${SRC}`;

/** server.ts with --workers on a free port, JSON log, README's flags. */
function startWorkers(args: string[], extraNet = ""): Promise<ServerProcess> {
  return ServerProcess.start(
    ["--log-format", "json", ...args],
    "127.0.0.1",
    undefined,
    { allowNet: `127.0.0.1${extraNet}`, flags: [READ_SRC] },
  );
}

function records(stdout: string): Record<string, unknown>[] {
  return stdout.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
}

Deno.test("server.ts --workers 2: both Workers serve 200 connections, every reply exact, and the summary counts each connection once", async () => {
  await using server = await startWorkers(["--workers", "2"]);
  const payloads = Array.from({ length: 200 }, (_, i) => randomBytes(i * 37));
  for (let i = 0; i < payloads.length; i += 20) {
    await Promise.all(
      payloads.slice(i, i + 20).map(async (payload) => {
        assertSameBytes(
          await roundTrip(server.port, payload),
          expectedUpper(payload),
        );
      }),
    );
  }
  const out = await server.stop();
  assertEquals(out.code, 0);
  const log = records(out.stdout);
  const workers = new Set(
    log.filter((r) => r.event === "connect").map((r) => r.worker),
  );
  assertEquals([...workers].sort(), [0, 1]);
  assertEquals(log.filter((r) => r.event === "listen").length, 1);
  assertEquals(log.filter((r) => r.event === "shutdown").length, 1);
  const summary = log.find((r) => r.event === "summary")!;
  assertEquals(summary.connections, 200);
  assertEquals(
    summary.bytesIn,
    payloads.reduce((sum, p) => sum + p.length, 0),
  );
  assertEquals((summary.closed as Record<string, number>).eof, 200);
});

Deno.test("server.ts --workers 2 on SIGTERM lets 20 clients mid-transfer finish: every reply complete, one summary", async () => {
  await using server = await startWorkers(["--workers", "2"]);
  const half = 256 * 1024;
  const payloads = Array.from({ length: 20 }, () => randomBytes(2 * half));
  const conns = await Promise.all(
    payloads.map(() =>
      Deno.connect({ hostname: "127.0.0.1", port: server.port })
    ),
  );
  const replies = conns.map((conn) => readToEnd(conn));
  await Promise.all(
    conns.map((conn, i) => writeAll(conn, payloads[i]!.subarray(0, half))),
  );
  await server.waitForLines(/"event":"connect"/, conns.length);
  server.child.kill("SIGTERM");
  await server.waitForLine(/"event":"shutdown"/);
  await Promise.all(conns.map(async (conn, i) => {
    await writeAll(conn, payloads[i]!.subarray(half));
    await conn.closeWrite();
  }));
  for (const [i, reply] of replies.entries()) {
    assertSameBytes(await reply, expectedUpper(payloads[i]!), `client ${i}`);
  }
  for (const conn of conns) conn.close();
  const out = await server.finish();
  assertEquals(out.code, 0);
  const summary = records(out.stdout).filter((r) => r.event === "summary");
  assertEquals(summary.length, 1);
  assertEquals(summary[0]!.connections, 20);
  assertEquals(summary[0]!.errors, 0);
});

Deno.test("server.ts --workers 2 --max-conns 3 holds the limit for the whole server, not per Worker", async () => {
  await using server = await startWorkers([
    "--workers",
    "2",
    "--max-conns",
    "3",
  ]);
  const held = [];
  for (let i = 0; i < 8; i++) {
    held.push(await Deno.connect({ hostname: "127.0.0.1", port: server.port }));
  }
  // Each admitted one answers; the refused ones are closed at once.
  const answers = await Promise.all(held.map(async (conn) => {
    try {
      await conn.write(utf8("x"));
      const buf = new Uint8Array(1);
      return await conn.read(buf) === 1;
    } catch (err: unknown) {
      if (err instanceof Deno.errors.ConnectionReset) return false;
      throw err;
    }
  }));
  assertEquals(answers.filter(Boolean).length, 3);
  for (const conn of held) conn.close();
  const out = await server.stop();
  const summary = records(out.stdout).find((r) => r.event === "summary")!;
  assertEquals([summary.connections, summary.refused], [3, 5]);
});

Deno.test("server.ts --workers 2 --once and --unicode work in every Worker", async () => {
  {
    await using server = await startWorkers(["--workers", "2", "--once"]);
    for (let i = 0; i < 10; i++) {
      const reply = await roundTrip(server.port, utf8("y".repeat(100)));
      assertEquals(text(reply), "Y".repeat(80));
    }
  }
  {
    await using server = await startWorkers(["--workers", "2", "--unicode"]);
    for (let i = 0; i < 10; i++) {
      assertEquals(
        text(await roundTrip(server.port, utf8("straße"))),
        "STRASSE",
      );
    }
  }
});

Deno.test("server.ts --workers: bad values, --unix, a missing read permission and a taken port are one line and an exit code", async () => {
  async function server(args: string[], flags: string[] = [READ_SRC]) {
    const out = await runDeno(denoRun("server.ts", "127.0.0.1", args, flags));
    return {
      code: out.code,
      stderr: out.stderr,
      stdout: out.stdout,
    };
  }
  for (const bad of ["0", "257", "two", "-1", "1.5"]) {
    assertEquals(await server(["--workers", bad]), {
      code: 1,
      stdout: "",
      stderr:
        `error: Invalid --workers: "${bad}" is not a whole number from 1 to 256, or auto\n`,
    });
  }
  assertEquals(
    (await server(["--workers", "2", "--unix", "/tmp/x.sock"])).stderr,
    "error: Conflicting flags: --workers cannot be combined with --unix (a Unix socket has one listener)\n",
  );
  assertEquals(
    await server(["--host", "127.0.0.1", "--port", "0", "--workers", "2"], []),
    {
      code: 2,
      stdout: "",
      stderr:
        `error: Permission denied: --workers starts Workers that load the library's modules, which needs --allow-read=${SRC}\n`,
    },
  );
  // A port held by one server: a second one, with or without --workers,
  // fails (SO_REUSEPORT listeners would share it silently).
  for (const first of [[], ["--workers", "2"]]) {
    await using held = await startWorkers(first);
    for (const second of [[], ["--workers", "2"]]) {
      const out = await server([
        "--host",
        "127.0.0.1",
        "--port",
        String(held.port),
        ...second,
      ]);
      assertEquals(out.code, 3, `${first} then ${second}: ${out.stderr}`);
      assertEquals(
        out.stderr,
        `error: Address in use: 127.0.0.1:${held.port} is taken by another process (try --port)\n`,
      );
    }
  }
});

Deno.test("server.ts --workers without --unstable-net (another deno.json) says so in one line, exit 1", async () => {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
  );
  delete config.unstable;
  delete config.lock; // its path is relative to the project folder
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/deno.json`;
    config.imports = Object.fromEntries(
      Object.entries(config.imports as Record<string, string>).filter(([, v]) =>
        v.startsWith("npm:")
      ),
    );
    await Deno.writeTextFile(path, JSON.stringify(config));
    const out = await runDeno([
      "run",
      "--no-prompt",
      `--config=${path}`,
      "--allow-net=127.0.0.1",
      READ_SRC,
      new URL("../server.ts", import.meta.url).pathname,
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--workers",
      "2",
    ]);
    assertEquals(out.code, 1);
    assertEquals(
      out.stderr,
      "error: Unstable API: --workers needs --unstable-net (deno.json turns it on when run from the project folder)\n",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("WorkerPool replaces a Worker that dies, logs the loss, and repairs the shared connection count", async () => {
  const events: [ServerEvent, number | undefined][] = [];
  const deaths: [number, string, number][] = [];
  const pool = await WorkerPool.start({
    workers: 2,
    serve: { hostname: "127.0.0.1", port: 0, maxConns: 4 },
    onEvent: (event, worker) => events.push([event, worker]),
    onWorkerDied: (worker, error, lost) => deaths.push([worker, error, lost]),
  });
  const port = pool.addr.port;
  try {
    // Hold connections until Worker 0 has some, then make it fail.
    const held: Deno.Conn[] = [];
    await waitUntil(
      async () => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        await writeAll(conn, utf8("a"));
        await conn.read(new Uint8Array(1));
        held.push(conn);
        const openIn0 = events.filter(([e, w]) =>
          e.type === "connect" && w === 0
        )
          .length;
        return openIn0 > 0 || held.length >= 4;
      },
      10_000,
      "a connection in Worker 0",
    );
    // A connection's event comes by message from its Worker, which may
    // arrive after its reply: wait for every held one's before counting.
    await waitUntil(
      () => events.filter(([e]) => e.type === "connect").length === held.length,
      10_000,
      "the connect event of each held connection",
    );
    const in0 = events.filter(([e, w]) =>
      e.type === "connect" && w === 0
    ).length;
    pool.crash(0);
    await waitUntil(() => deaths.length === 1, 10_000, "the death is reported");
    assertEquals(deaths[0]![0], 0);
    assertMatch(deaths[0]![1], /made to fail on purpose/);
    assertEquals(deaths[0]![2], in0);
    // Each lost connection is closed for the log and the page too.
    const lost = events.filter(([e, w]) =>
      e.type === "close" && w === 0 &&
      e.error?.startsWith("lost: its Worker died")
    );
    assertEquals(lost.length, in0);
    for (const conn of held) conn.close();
    // The count of the dead Worker's connections is repaired: four new
    // clients at once are all admitted by the two Workers (one replaced).
    await waitUntil(() => pool.stats.active === 0, 10_000, "the others closed");
    const clients = [];
    for (let i = 0; i < 4; i++) {
      clients.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    }
    const answered = await Promise.all(clients.map(async (conn) => {
      await writeAll(conn, utf8("b"));
      return await conn.read(new Uint8Array(1)) === 1;
    }));
    assertEquals(answered, [true, true, true, true]);
    for (const conn of clients) conn.close();
    // And the replacement serves.
    const after = events.length;
    await waitUntil(
      async () => {
        await roundTrip(port, utf8("c"));
        return events.slice(after).some(([e, w]) =>
          e.type === "connect" && w === 0
        );
      },
      10_000,
      "the new Worker 0 serves",
    );
  } finally {
    await pool.shutdown({ grace: 0 });
  }
  assert(pool.stats.errors >= deaths[0]![2]);
});

// --metrics

/** Parses a Prometheus exposition with Debian's python3-prometheus-client. */
async function parseExposition(
  body: string,
): Promise<
  Record<
    string,
    { type: string; samples: [string, Record<string, string>, number][] }
  >
> {
  const script = `
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    out[f.name] = {"type": f.type, "samples": [[s.name, s.labels, s.value] for s in f.samples]}
print(json.dumps(out))
`;
  const child = new Deno.Command("/usr/bin/python3", {
    args: ["-I", "-c", script],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(CHILD_TIME_LIMIT_MS),
  }).spawn();
  // Its output is read while the input is written, so no pipe fills.
  const [out] = await Promise.all([
    child.output(),
    writeStdin(child, utf8(body)),
  ]);
  if (out.code !== 0) {
    throw new Error(
      `The Prometheus parser rejected /metrics or is missing (apt-get install python3-prometheus-client): ${
        text(out.stderr)
      }`,
    );
  }
  return JSON.parse(text(out.stdout));
}

function sample(
  families: Awaited<ReturnType<typeof parseExposition>>,
  family: string,
  name: string,
  labels: Record<string, string> = {},
): number {
  const found = families[family]?.samples.find(([n, l]) =>
    n === name && JSON.stringify(l) === JSON.stringify(labels)
  );
  if (found === undefined) {
    throw new Error(`No sample ${name} ${JSON.stringify(labels)}`);
  }
  return found[2];
}

for (const workers of ["1", "2"]) {
  Deno.test(`server.ts --workers ${workers} --metrics: /metrics parses as Prometheus text and matches the traffic; /healthz turns 503 when the drain starts`, async () => {
    const metricsPort = freePort();
    await using server = await startWorkers([
      "--workers",
      workers,
      "--metrics",
      `127.0.0.1:${metricsPort}`,
      "--grace",
      "5",
    ], `,127.0.0.1:${metricsPort}`);
    await server.waitForLine(/"event":"metrics"/);
    const base = `http://127.0.0.1:${metricsPort}`;
    // 10 clients of 100 bytes, one that resets, one held open.
    for (let i = 0; i < 10; i++) {
      await roundTrip(server.port, randomBytes(100));
    }
    const held = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.port,
    });
    await writeAll(held, utf8("12345"));
    await held.read(new Uint8Array(5));
    await server.waitForLines(/"event":"close"/, 10);
    // Workers report the bytes of open connections every half second.
    let families: Awaited<ReturnType<typeof parseExposition>> = {};
    await waitUntil(
      async () => {
        const response = await fetch(`${base}/metrics`);
        assertEquals(response.status, 200);
        assertEquals(
          response.headers.get("content-type"),
          "text/plain; version=0.0.4; charset=utf-8",
        );
        families = await parseExposition(await response.text());
        return sample(
          families,
          "upcase_bytes_received",
          "upcase_bytes_received_total",
        ) === 1005;
      },
      15_000,
      "/metrics counts the open connection's bytes",
    );
    assertEquals(families["upcase_connections_accepted"]!.type, "counter");
    assertEquals(
      sample(
        families,
        "upcase_connections_accepted",
        "upcase_connections_accepted_total",
      ),
      11,
    );
    assertEquals(
      sample(
        families,
        "upcase_connections_active",
        "upcase_connections_active",
      ),
      1,
    );
    assertEquals(
      sample(
        families,
        "upcase_connections_closed",
        "upcase_connections_closed_total",
        { reason: "eof" },
      ),
      10,
    );
    assertEquals(
      sample(families, "upcase_bytes_received", "upcase_bytes_received_total"),
      1005,
    );
    assertEquals(
      sample(families, "upcase_bytes_sent", "upcase_bytes_sent_total"),
      1005,
    );
    assertEquals(
      sample(
        families,
        "upcase_connection_duration_seconds",
        "upcase_connection_duration_seconds_count",
      ),
      10,
    );
    assertEquals(
      families["upcase_connection_duration_seconds"]!.type,
      "histogram",
    );
    assertEquals(
      sample(families, "upcase_build_info", "upcase_build_info", {
        version: "0.1.0",
      }),
      1,
    );
    assert(
      sample(
        families,
        "process_resident_memory_bytes",
        "process_resident_memory_bytes",
      ) > 1e6,
    );
    const healthy = await fetch(`${base}/healthz`);
    assertEquals([healthy.status, await healthy.text()], [200, "ok\n"]);
    const head = await fetch(`${base}/healthz`, { method: "HEAD" });
    await head.body?.cancel();
    assertEquals(head.status, 200);
    const missing = await fetch(`${base}/nope`);
    await missing.body?.cancel();
    assertEquals(missing.status, 404);
    const post = await fetch(`${base}/metrics`, { method: "POST" });
    await post.body?.cancel();
    assertEquals(post.status, 405);
    // The drain: the held client keeps the server in its grace period.
    server.child.kill("SIGTERM");
    await server.waitForLine(/"event":"shutdown"/);
    const draining = await fetch(`${base}/healthz`);
    assertEquals([draining.status, await draining.text()], [503, "draining\n"]);
    held.close();
    const out = await server.finish();
    assertEquals(out.code, 0);
  });
}

Deno.test("server.ts --metrics: a bad address, the server's own address and a missing permission are one line and an exit code", async () => {
  async function server(args: string[], port = 7) {
    const out = await runDeno(denoRun("server.ts", `127.0.0.1:${port}`, [
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      ...args,
    ]));
    return { code: out.code, stderr: out.stderr };
  }
  assertEquals(await server(["--metrics", "9090"]), {
    code: 1,
    stderr:
      'error: Invalid --metrics: "9090" is not HOST:PORT (an IPv6 address as [::1]:9090)\n',
  });
  assertEquals(await server(["--metrics", "[::1]:99999"]), {
    code: 1,
    stderr: 'error: Invalid port: "99999" is not an integer from 0 to 65535\n',
  });
  assertEquals(await server(["--metrics", "127.0.0.1:7"]), {
    code: 1,
    stderr:
      "error: Conflicting flags: --metrics 127.0.0.1:7 is the server's own address\n",
  });
  const out = await server(["--metrics", `[::1]:${freePort()}`], freePort());
  assertEquals(out.code, 2);
  assertMatch(
    out.stderr,
    /^error: Permission denied: listening on \[::1\]:\d+ needs --allow-net=\[::1\]:\d+\n$/,
  );
});

Deno.test("server.ts --workers 2 --cert --key serves TLS from both Workers", async () => {
  const certs = await makeTestCerts();
  try {
    await using server = await ServerProcess.start(
      [
        "--log-format",
        "json",
        "--workers",
        "2",
        "--cert",
        certs.cert,
        "--key",
        certs.key,
      ],
      "127.0.0.1",
      undefined,
      {
        allowNet: "127.0.0.1",
        flags: [`${READ_SRC},${certs.cert},${certs.key}`],
      },
    );
    assertMatch(server.log[0]!, /"event":"listen".*"tls":"relay"/);
    const tls = { caCerts: [await Deno.readTextFile(certs.ca)] };
    for (let i = 0; i < 40; i++) {
      const payload = randomBytes(1000 + i);
      assertSameBytes(
        await request(payload, { port: server.port, tls }),
        expectedUpper(payload),
      );
    }
    const out = await server.stop();
    const workers = new Set(
      records(out.stdout).filter((r) => r.event === "connect").map((r) =>
        r.worker
      ),
    );
    assertEquals([...workers].sort(), [0, 1]);
  } finally {
    await Deno.remove(certs.dir, { recursive: true });
  }
});
