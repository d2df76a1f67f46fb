// Copyright the upcase authors. MIT license.
// The metrics side channel: the exposition text checked by real parsers
// (Debian's python3-prometheus-client, and promtool when it is installed),
// the duration histogram, and the HTTP routes over loopback with fetch and
// raw sockets.

import { withTimeout as withTimeoutMs } from "../stress/_util.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "@std/assert";
import {
  CLOSE_REASONS,
  DURATION_BUCKETS,
  DurationHistogram,
  METRICS_CONTENT_TYPE,
  type MetricsSnapshot,
  renderMetrics,
} from "../src/metrics.ts";
import { type MetricsServer, serveMetrics } from "../src/_http.ts";
import { freePort, ServerProcess, utf8, writeStdin } from "./_util.ts";
import { Receiver } from "../src/_udp_socket.ts";

/** The interpreter that has Debian's python3-prometheus-client. */
const PYTHON = "/usr/bin/python3";
/** Debian's `prometheus` package puts it here. */
const PROMTOOL = "/usr/bin/promtool";
/** The longest any one step may take before the test fails. */
const STEP_TIMEOUT_MS = 10_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Parses stdin with the official parser and prints the families as JSON. */
const PARSE_SCRIPT = `
import json, sys
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError as err:
    sys.stderr.write("%s\\n" % err)
    sys.exit(3)
families = [
    {
        "name": f.name,
        "type": f.type,
        "help": f.documentation,
        "samples": [
            {"name": s.name, "labels": s.labels, "value": s.value}
            for s in f.samples
        ],
    }
    for f in text_string_to_metric_families(sys.stdin.read())
]
print(json.dumps(families))
`;

interface ParsedSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface ParsedFamily {
  name: string;
  type: string;
  help: string;
  samples: ParsedSample[];
}

/** Rejects with a message naming `what` if `promise` takes longer than `ms`. */
function withTimeout<T>(
  promise: Promise<T>,
  what: string,
  ms = STEP_TIMEOUT_MS,
): Promise<T> {
  return withTimeoutMs(promise, ms, what);
}

/** Runs `command` with `input` on stdin, killed after STEP_TIMEOUT_MS. */
async function run(
  command: string,
  args: string[],
  input: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const killer = new AbortController();
  const timer = setTimeout(() => killer.abort(), STEP_TIMEOUT_MS);
  try {
    const child = new Deno.Command(command, {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      signal: killer.signal,
    }).spawn();
    // Its output is read while the input is written, so no pipe fills.
    const [{ code, stdout, stderr }] = await Promise.all([
      child.output(),
      writeStdin(child, encoder.encode(input)),
    ]);
    return {
      code,
      stdout: decoder.decode(stdout),
      stderr: decoder.decode(stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The families the official Python parser reads from `text`. Throws, and so
 * fails the test, with the reason when the parser is not there: this check
 * is the point of the test and must not pass by being skipped.
 */
async function parseWithPython(text: string): Promise<ParsedFamily[]> {
  let result;
  try {
    result = await run(PYTHON, ["-I", "-c", PARSE_SCRIPT], text);
  } catch (err: unknown) {
    if (err instanceof Deno.errors.NotFound) {
      throw new Error(
        `Cannot check the exposition: ${PYTHON} does not exist (install Debian's python3 and python3-prometheus-client)`,
      );
    }
    throw err;
  }
  if (result.code === 3) {
    throw new Error(
      `Cannot check the exposition: ${PYTHON} cannot import prometheus_client (install Debian's python3-prometheus-client): ${result.stderr.trim()}`,
    );
  }
  if (result.code !== 0) {
    throw new Error(
      `The Python Prometheus parser rejected the exposition: exit code ${result.code}: ${result.stderr.trim()}`,
    );
  }
  return JSON.parse(result.stdout) as ParsedFamily[];
}

/** Why promtool cannot run here, or undefined when it can. */
function missingPromtool(): string | undefined {
  try {
    Deno.statSync(PROMTOOL);
    return undefined;
  } catch (err: unknown) {
    if (err instanceof Deno.errors.NotFound) {
      return `${PROMTOOL} not found (Debian's prometheus package)`;
    }
    throw err;
  }
}

const promtoolSkip = missingPromtool();
if (promtoolSkip !== undefined) {
  console.warn(`metrics_test.ts: promtool check SKIPPED: ${promtoolSkip}`);
}

/** The closed counts with every reason at zero, then `counts` over them. */
function closed(
  counts: Partial<MetricsSnapshot["closed"]> = {},
): MetricsSnapshot["closed"] {
  return {
    eof: 0,
    reset: 0,
    error: 0,
    "idle-timeout": 0,
    shutdown: 0,
    handshake: 0,
    header: 0,
    check: 0,
    ...counts,
  };
}

/** A made-up snapshot whose every number is different, to catch swaps. */
function sampleSnapshot(
  overrides: Partial<MetricsSnapshot> = {},
): MetricsSnapshot {
  return {
    accepted: 1234,
    active: 17,
    refused: 9,
    closed: closed({
      eof: 1000,
      reset: 100,
      error: 50,
      "idle-timeout": 40,
      shutdown: 8,
      handshake: 7,
      header: 3,
      // check stays 0: a zero is listed too
    }),
    bytesIn: 987654321,
    bytesOut: 987654320,
    duration: {
      buckets: [5, 10, 20, 30, 40, 50, 60],
      sum: 4321.5,
      count: 215,
    },
    version: "0.1.0",
    startTimeSeconds: 1700000000.25,
    ...overrides,
  };
}

/** A sample as the parser reports it. */
function s(
  name: string,
  value: number,
  labels: Record<string, string> = {},
): ParsedSample {
  return { name, labels, value };
}

Deno.test("renderMetrics() writes every family with its type, help and values as the Prometheus Python parser reads them", async () => {
  const rss = 123456789;
  const families = await parseWithPython(renderMetrics(sampleSnapshot(), rss));
  // Format 0.0.4 names a counter family with its _total suffix in HELP, TYPE
  // and the sample; the Python parser reports the family without the suffix
  // (the OpenMetrics name) and keeps it on the sample. A TYPE line without
  // _total would make these samples untyped families of their own.
  const expected: Omit<ParsedFamily, "help">[] = [
    {
      name: "upcase_connections_accepted",
      type: "counter",
      samples: [s("upcase_connections_accepted_total", 1234)],
    },
    {
      name: "upcase_connections_active",
      type: "gauge",
      samples: [s("upcase_connections_active", 17)],
    },
    {
      name: "upcase_connections_refused",
      type: "counter",
      samples: [s("upcase_connections_refused_total", 9)],
    },
    {
      name: "upcase_connections_closed",
      type: "counter",
      samples: [
        s("upcase_connections_closed_total", 1000, { reason: "eof" }),
        s("upcase_connections_closed_total", 100, { reason: "reset" }),
        s("upcase_connections_closed_total", 50, { reason: "error" }),
        s("upcase_connections_closed_total", 40, { reason: "idle-timeout" }),
        s("upcase_connections_closed_total", 8, { reason: "shutdown" }),
        s("upcase_connections_closed_total", 7, { reason: "handshake" }),
        s("upcase_connections_closed_total", 3, { reason: "header" }),
        s("upcase_connections_closed_total", 0, { reason: "check" }),
      ],
    },
    {
      name: "upcase_bytes_received",
      type: "counter",
      samples: [s("upcase_bytes_received_total", 987654321)],
    },
    {
      name: "upcase_bytes_sent",
      type: "counter",
      samples: [s("upcase_bytes_sent_total", 987654320)],
    },
    {
      name: "upcase_connection_duration_seconds",
      type: "histogram",
      samples: [
        // Cumulative: 5, 5+10, 5+10+20, ...
        s("upcase_connection_duration_seconds_bucket", 5, { le: "0.001" }),
        s("upcase_connection_duration_seconds_bucket", 15, { le: "0.01" }),
        s("upcase_connection_duration_seconds_bucket", 35, { le: "0.1" }),
        s("upcase_connection_duration_seconds_bucket", 65, { le: "1" }),
        s("upcase_connection_duration_seconds_bucket", 105, { le: "10" }),
        s("upcase_connection_duration_seconds_bucket", 155, { le: "60" }),
        s("upcase_connection_duration_seconds_bucket", 215, { le: "+Inf" }),
        s("upcase_connection_duration_seconds_sum", 4321.5),
        s("upcase_connection_duration_seconds_count", 215),
      ],
    },
    {
      name: "upcase_build_info",
      type: "gauge",
      samples: [s("upcase_build_info", 1, { version: "0.1.0" })],
    },
    {
      name: "process_resident_memory_bytes",
      type: "gauge",
      samples: [s("process_resident_memory_bytes", rss)],
    },
    {
      name: "process_start_time_seconds",
      type: "gauge",
      samples: [s("process_start_time_seconds", 1700000000.25)],
    },
  ];
  assertEquals(
    families.map(({ name, type, samples }) => ({ name, type, samples })),
    expected,
  );
  for (const family of families) {
    assert(family.help !== "", `${family.name} has a HELP text`);
  }
});

Deno.test("renderMetrics() lists every close reason and bucket in its vocabulary, zeros included", () => {
  const text = renderMetrics(
    sampleSnapshot({
      closed: closed(),
      duration: new DurationHistogram().snapshot(),
    }),
    1,
  );
  for (const reason of CLOSE_REASONS) {
    assertMatch(
      text,
      new RegExp(
        `^upcase_connections_closed_total\\{reason="${reason}"\\} 0$`,
        "m",
      ),
    );
  }
  for (const le of [...DURATION_BUCKETS.map(String), "+Inf"]) {
    assertMatch(
      text,
      new RegExp(
        `^upcase_connection_duration_seconds_bucket\\{le="${
          le.replace("+", "\\+")
        }"\\} 0$`,
        "m",
      ),
    );
  }
  assert(text.endsWith("\n"), "the exposition ends in a line feed");
});

Deno.test("renderMetrics() escapes a version label with a quote, a backslash and a line feed so the parser reads it back", async () => {
  const version = 'a "quoted" \\ back\nslash';
  const text = renderMetrics(sampleSnapshot({ version }), 1);
  assertMatch(
    text,
    /^upcase_build_info\{version="a \\"quoted\\" \\\\ back\\nslash"\} 1$/m,
  );
  const families = await parseWithPython(text);
  const info = families.find((f) => f.name === "upcase_build_info");
  assertEquals(info?.samples, [s("upcase_build_info", 1, { version })]);
});

Deno.test({
  name: "renderMetrics() passes promtool check metrics without a lint warning",
  ignore: promtoolSkip !== undefined,
  async fn() {
    const text = renderMetrics(
      sampleSnapshot({ version: 'odd "one"\\\n' }),
      Deno.memoryUsage().rss,
    );
    const { code, stdout, stderr } = await run(
      PROMTOOL,
      ["check", "metrics"],
      text,
    );
    assertEquals(
      { code, output: (stdout + stderr).trim() },
      { code: 0, output: "" },
    );
  },
});

Deno.test("renderMetrics() rejects a histogram without one count per bucket", () => {
  const err = assertThrows(
    () =>
      renderMetrics(
        sampleSnapshot({ duration: { buckets: [1, 2], sum: 1, count: 3 } }),
        1,
      ),
    RangeError,
  );
  assertEquals(
    err.message,
    "Invalid histogram: expected 7 bucket counts, got 2",
  );
});

Deno.test("DurationHistogram.observe() counts a value in the first bucket whose bound it does not exceed", () => {
  const histogram = new DurationHistogram();
  for (
    const seconds of [0, 0.001, 0.0011, 0.01, 0.05, 1, 1.5, 10, 60, 60.5, 3600]
  ) {
    histogram.observe(seconds);
  }
  const { buckets, sum, count } = histogram.snapshot();
  assertEquals(buckets, [2, 2, 1, 1, 2, 1, 2]);
  assertEquals(count, 11);
  assertEquals(
    sum,
    0 + 0.001 + 0.0011 + 0.01 + 0.05 + 1 + 1.5 + 10 + 60 + 60.5 + 3600,
  );
});

Deno.test("DurationHistogram.observe() rejects a negative, infinite or NaN duration and counts nothing", () => {
  const histogram = new DurationHistogram();
  for (const seconds of [-0.5, Infinity, NaN]) {
    const err = assertThrows(() => histogram.observe(seconds), RangeError);
    assertEquals(
      err.message,
      `Invalid duration: ${seconds} is not a finite number of seconds from 0`,
    );
  }
  assertEquals(histogram.snapshot().count, 0);
});

Deno.test("DurationHistogram.merge() sums the snapshots of several histograms into one", () => {
  const a = new DurationHistogram();
  const b = new DurationHistogram();
  a.observe(0.0005);
  a.observe(5);
  b.observe(5);
  b.observe(120);
  const total = new DurationHistogram();
  // As the main thread would, from snapshots the Workers post.
  total.merge(structuredClone(a.snapshot()));
  total.merge(structuredClone(b.snapshot()));
  assertEquals(total.snapshot(), {
    buckets: [1, 0, 0, 0, 2, 0, 1],
    sum: 0.0005 + 5 + 5 + 120,
    count: 4,
  });
  const err = assertThrows(
    () => total.merge({ buckets: [1], sum: 1, count: 1 }),
    RangeError,
  );
  assertEquals(
    err.message,
    "Invalid histogram: expected 7 bucket counts, got 1",
  );
});

Deno.test("DurationHistogram.snapshot() is a copy that later observations do not change", () => {
  const histogram = new DurationHistogram();
  histogram.observe(0.5);
  const before = histogram.snapshot();
  histogram.observe(0.5);
  assertEquals(before, { buckets: [0, 0, 0, 1, 0, 0, 0], sum: 0.5, count: 1 });
  before.buckets[3] = 99;
  assertEquals(histogram.snapshot().buckets[3], 2);
});

/** Starts the side channel on 127.0.0.1 port 0 with the given callbacks. */
function startServer(
  snapshot: () => MetricsSnapshot,
  healthy: () => boolean = () => true,
): MetricsServer {
  return serveMetrics({ hostname: "127.0.0.1", port: 0, snapshot, healthy });
}

/** Fetches `path` from `server` and reads the whole body. */
async function get(
  server: MetricsServer,
  path: string,
  method = "GET",
): Promise<{ status: number; headers: Headers; body: string }> {
  const response = await withTimeout(
    fetch(`http://127.0.0.1:${server.addr.port}${path}`, { method }),
    `${method} ${path}`,
  );
  const body = await withTimeout(response.text(), `${method} ${path} body`);
  return { status: response.status, headers: response.headers, body };
}

/** Headers as a plain object, without `date` (which changes by the second). */
function headersOf(headers: Headers): Record<string, string> {
  const out = Object.fromEntries(headers);
  delete out.date;
  return out;
}

Deno.test("serveMetrics() answers GET /metrics with a fresh exposition of snapshot() each time", async () => {
  let accepted = 1;
  const server = startServer(() => sampleSnapshot({ accepted }));
  try {
    const first = await get(server, "/metrics");
    assertEquals(first.status, 200);
    assertEquals(first.headers.get("content-type"), METRICS_CONTENT_TYPE);
    assertMatch(first.body, /^upcase_connections_accepted_total 1$/m);
    const rss = /^process_resident_memory_bytes (\d+)$/m.exec(first.body);
    assert(rss !== null && Number(rss[1]) > 0, "the RSS is the process's own");
    // Everything but the RSS and the side channel's own counters is
    // exactly what renderMetrics() writes.
    const own = /^(# (HELP|TYPE) )?upcase_http_.*\n/gm;
    assertEquals(
      first.body.replace(/^process_resident_memory_bytes .*$/m, "")
        .replace(own, ""),
      renderMetrics(sampleSnapshot({ accepted: 1 }), 0)
        .replace(/^process_resident_memory_bytes .*$/m, ""),
    );
    assertMatch(first.body, /^upcase_http_connections_open 1$/m);
    accepted = 2;
    const second = await get(server, "/metrics");
    assertMatch(second.body, /^upcase_connections_accepted_total 2$/m);
  } finally {
    await withTimeout(server.shutdown(), "shutdown");
  }
});

Deno.test("serveMetrics() answers /healthz with 200 ok while healthy and 503 draining once healthy() turns false", async () => {
  let healthy = true;
  const server = startServer(sampleSnapshot, () => healthy);
  try {
    const up = await get(server, "/healthz");
    assertEquals([up.status, up.body], [200, "ok\n"]);
    assertEquals(up.headers.get("content-type"), "text/plain; charset=utf-8");
    healthy = false;
    const down = await get(server, "/healthz");
    assertEquals([down.status, down.body], [503, "draining\n"]);
  } finally {
    await withTimeout(server.shutdown(), "shutdown");
  }
});

Deno.test("serveMetrics() answers HEAD with the status and headers of GET and no body", async () => {
  let healthy = true;
  const server = startServer(sampleSnapshot, () => healthy);
  try {
    for (const path of ["/metrics", "/healthz", "/healthz"]) {
      const got = await get(server, path);
      const head = await get(server, path, "HEAD");
      assertEquals(head.status, got.status, `HEAD ${path} status`);
      // /metrics changes between two requests (the RSS, the side channel's
      // own counts): its length is the one a GET would have had just then.
      const length = (headers: Headers) => {
        const { "content-length": value, ...rest } = headersOf(headers);
        return { value: Number(value), rest };
      };
      assertEquals(length(head.headers).rest, length(got.headers).rest);
      const expected = encoder.encode(got.body).length;
      const actual = length(head.headers).value;
      assert(
        path === "/metrics"
          ? Math.abs(actual - expected) < 200
          : actual === expected,
        `HEAD ${path} gives the length of a GET body: ${actual}, not ${expected}`,
      );
      assertEquals(head.body, "");
      healthy = false; // the second /healthz round is the 503 one
    }

    // On the wire: a HEAD then a GET on one connection. Had the HEAD sent a
    // body, it would sit between the two heads.
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.addr.port,
    });
    try {
      await conn.write(encoder.encode(
        "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n" +
          "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      ));
      const wire = await withTimeout(readToEnd(conn), "HEAD then GET");
      assertMatch(
        wire,
        /^HTTP\/1\.1 503 [^\r]*\r\n(?:[^\r]+\r\n)+\r\nHTTP\/1\.1 503 [^\r]*\r\n(?:[^\r]+\r\n)+\r\ndraining\n$/,
      );
    } finally {
      conn.close();
    }
  } finally {
    await withTimeout(server.shutdown(), "shutdown");
  }
});

/** Reads `conn` until the peer closes, as text. */
async function readToEnd(conn: Deno.Conn): Promise<string> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(16384);
  for (;;) {
    const n = await conn.read(buffer);
    if (n === null) break;
    chunks.push(buffer.slice(0, n));
  }
  return decoder.decode(
    chunks.reduce((all, chunk) => {
      const joined = new Uint8Array(all.length + chunk.length);
      joined.set(all);
      joined.set(chunk, all.length);
      return joined;
    }, new Uint8Array()),
  );
}

Deno.test("serveMetrics() answers 404 for any other path, whatever the method", async () => {
  const server = startServer(sampleSnapshot);
  try {
    for (
      const [method, path] of [
        ["GET", "/"],
        ["GET", "/metrics/"],
        ["GET", "/metricsx"],
        ["GET", "/healthz/extra"],
        ["POST", "/nope"],
        ["HEAD", "/events"],
      ]
    ) {
      const { status } = await get(server, path!, method);
      assertEquals(status, 404, `${method} ${path}`);
    }
    // A query string does not change the path.
    assertEquals((await get(server, "/healthz?verbose=1")).status, 200);
  } finally {
    await withTimeout(server.shutdown(), "shutdown");
  }
});

Deno.test("serveMetrics() answers 405 with Allow: GET, HEAD for another method on a known path", async () => {
  const server = startServer(sampleSnapshot);
  try {
    for (
      const [method, path] of [
        ["POST", "/metrics"],
        ["PUT", "/healthz"],
        ["DELETE", "/metrics"],
        ["OPTIONS", "/healthz"],
      ]
    ) {
      const { status, headers } = await get(server, path!, method);
      assertEquals(status, 405, `${method} ${path}`);
      assertEquals(headers.get("allow"), "GET, HEAD", `${method} ${path}`);
    }
  } finally {
    await withTimeout(server.shutdown(), "shutdown");
  }
});

Deno.test("serveMetrics() shutdown() resolves promptly with clients still connected, and closes their connections", async () => {
  const server = startServer(sampleSnapshot);
  let finished = false;
  server.finished.then(() => finished = true);
  const port = server.addr.port;
  // One client kept alive after a request, one that connected and said
  // nothing, one halfway through its request head, and fetch's own pool.
  const kept = await Deno.connect({ hostname: "127.0.0.1", port });
  const silent = await Deno.connect({ hostname: "127.0.0.1", port });
  const partial = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await get(server, "/healthz");
    await kept.write(
      encoder.encode("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
    );
    const buffer = new Uint8Array(4096);
    const n = await withTimeout(kept.read(buffer), "kept-alive reply");
    assertMatch(decoder.decode(buffer.subarray(0, n ?? 0)), /^HTTP\/1\.1 200 /);
    await partial.write(encoder.encode("GET /metrics HTTP/1.1\r\nHo"));

    await withTimeout(server.shutdown(), "shutdown with clients connected");
    await withTimeout(server.finished, "finished after shutdown");
    assert(finished, "finished has resolved");
    for (const [what, conn] of [["kept", kept], ["silent", silent]] as const) {
      assertEquals(
        await withTimeout(conn.read(buffer), `${what} sees the close`),
        null,
        `the server closed the ${what} connection`,
      );
    }
    // The half-sent request may get a 4xx or just the close; either way the
    // connection ends.
    await withTimeout(readToEnd(partial), "partial sees the close");
  } finally {
    kept.close();
    silent.close();
    partial.close();
  }
});

Deno.test("serveMetrics() calls onListen with the real port and prints no Listening line of its own", async () => {
  const module = new URL("../src/_http.ts", import.meta.url).href;
  const script = `
    import { serveMetrics } from ${JSON.stringify(module)};
    let seen;
    const server = serveMetrics({
      hostname: "127.0.0.1",
      port: 0,
      snapshot: () => { throw new Error("not asked"); },
      healthy: () => true,
      onListen: (addr) => { seen = addr; },
    });
    await server.shutdown();
    if (seen?.port !== server.addr.port || seen.port === 0) {
      Deno.exit(2);
    }
  `;
  const { code, stdout, stderr } = await run(
    Deno.execPath(),
    ["eval", "--quiet", "--no-config", script],
    "",
  );
  assertEquals({ code, stdout, stderr }, { code: 0, stdout: "", stderr: "" });
});

Deno.test("server --udp --metrics counts datagrams received, sent and dropped by reason, as the Python parser reads them and as the peer saw", async () => {
  const metricsPort = freePort();
  await using server = await ServerProcess.start(
    ["--udp", "--udp-rate", "2", "--metrics", `127.0.0.1:${metricsPort}`],
    "127.0.0.1",
    undefined,
    { allowNet: "127.0.0.1" },
  );
  await server.waitForLine(/^Serving metrics on /);
  const socket = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  const receiver = new Receiver(socket, 1024);
  let replies = 0;
  try {
    const to = {
      transport: "udp" as const,
      hostname: "127.0.0.1",
      port: server.port,
    };
    // A burst of 2 is the rate's: the third and fourth are dropped.
    for (let i = 0; i < 4; i++) await socket.send(utf8("abc"), to);
    while (await receiver.next(500)) replies++;
  } finally {
    receiver.close();
  }
  assertEquals(replies, 2);
  const response = await withTimeout(
    fetch(`http://127.0.0.1:${metricsPort}/metrics`),
    "GET /metrics",
  );
  const families = await parseWithPython(await response.text());
  const value = (name: string, labels: Record<string, string> = {}) =>
    families.flatMap((f) => f.samples).find((s) =>
      s.name === name &&
      Object.entries(labels).every(([k, v]) => s.labels[k] === v)
    )?.value;
  assertEquals(value("upcase_datagrams_received_total"), 4);
  assertEquals(value("upcase_datagrams_sent_total"), replies);
  assertEquals(value("upcase_datagrams_dropped_total", { reason: "rate" }), 2);
  assertEquals(
    value("upcase_datagrams_dropped_total", { reason: "reflecting-port" }),
    0,
  );
  assertEquals(value("upcase_datagram_bytes_received_total"), 12);
  assertEquals(value("upcase_datagram_bytes_sent_total"), 6);
});
